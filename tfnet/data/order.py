"""The order of the training examples: each epoch's permutation and each mini-batch's positions.

Every random choice of an epoch (its order, the augmentation of each mini-batch) is drawn with
stateless ops from (seed, epoch), so the data need no state of their own in a checkpoint:
resuming at epoch e, mini-batch i, reproduces them exactly, whether the split is held in memory
or streamed from disk (docs/methods.md §5).
"""

import math

import tensorflow as tf

# Stateless random numbers with one named algorithm: the integers it draws are the same with
# and without XLA, so an epoch's order does not depend on --jit_compile.
_ALGORITHM = "philox"


def epoch_key(seed, epoch):
    """The random key ``[2]`` (int64) of one epoch: a pure function of the run's seed and epoch.
    Works eagerly and inside compiled functions."""
    return tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])


def epoch_orders(num_examples, seed, first_epoch, count):
    """The orders of ``count`` epochs from ``first_epoch``: int32 ``[count, m]``, row k that of
    epoch ``first_epoch + k``, each a random permutation of the m training examples.

    Epoch e's examples are sorted by m random keys: 24-bit random integers (as float32, which
    holds them exactly), ties broken by position. The integers are Philox's, keyed by the seed,
    from counter ``e·⌈m/4⌉`` on, so each epoch's keys are a pure function of (seed, epoch), the
    same drawn alone or with other epochs, with and without XLA, while the orders of many epochs
    take one op. Ties are rare (about m²/2²⁵ pairs: 1.2 for 6,400 examples), so the permutation
    is all but uniform.
    """
    counters_per_epoch = -(-num_examples // 4)  # Philox makes four 32-bit numbers per counter
    key = tf.random.experimental.stateless_fold_in(tf.stack([tf.cast(seed, tf.int64), 0]), 0,
                                                   alg=_ALGORITHM)[:1]
    counter = tf.stack([tf.cast(first_epoch, tf.uint64) * counters_per_epoch,
                        tf.constant(0, tf.uint64)])
    bits = tf.raw_ops.StatelessRandomUniformFullIntV2(
        shape=tf.stack([tf.cast(count, tf.int32), 4 * counters_per_epoch]),
        key=tf.cast(key, tf.uint64), counter=counter, alg=1, dtype=tf.int32)  # 1: Philox
    keys = tf.cast(tf.bitwise.right_shift(bits[:, :num_examples], 8), tf.float32)  # exact
    return tf.math.top_k(keys, k=num_examples).indices


def epoch_order(num_examples, seed, epoch):
    """The order of the m training examples in one epoch (``epoch_orders``' row for it)."""
    return epoch_orders(num_examples, seed, epoch, 1)[0]


def augmentation_seed(seed, epoch, batch, replica=0):
    """The seed ``[2]`` of the augmentation of mini-batch ``batch`` (0-based) of ``epoch``.

    Under ``tf.distribute`` each replica augments its own part of the global batch, with
    ``replica`` its index; one device is replica 0.
    """
    key = tf.random.experimental.stateless_fold_in(epoch_key(seed, epoch), 1, alg=_ALGORITHM)
    key = tf.random.experimental.stateless_fold_in(key, tf.cast(batch, tf.int64), alg=_ALGORITHM)
    return tf.random.experimental.stateless_fold_in(key, tf.cast(replica, tf.int64),
                                                    alg=_ALGORITHM)


def batch_indices(order, batch, batch_size, size=None):
    """Positions in the split of mini-batch ``batch`` (0-based) of an epoch in ``order``.

    Mini-batch i holds the examples ``order[i·b : min((i + 1)·b, m)]``: every mini-batch has b
    examples but the last, which has the m − (⌈m/b⌉ − 1)·b left over (docs/methods.md §5).
    ``size`` is that number of examples when the caller knows it as a Python int (XLA needs
    static shapes); by default it is computed. The positions are gathered from a range rather
    than sliced, so that XLA compiles a dynamic ``batch`` once instead of once per value.
    """
    start = tf.cast(batch, tf.int64) * batch_size
    if size is None:
        size = tf.minimum(tf.cast(batch_size, tf.int64), tf.size(order, out_type=tf.int64) - start)
    return tf.gather(order, start + tf.range(size, dtype=tf.int64))


def steps_per_epoch(num_examples, batch_size):
    """Mini-batches per epoch, counting the smaller last one: ⌈m / b⌉."""
    return math.ceil(num_examples / batch_size)


def replica_rows(num_rows, replica_id, num_replicas):
    """The rows ``[n·r/R, n·(r+1)/R)`` of a global mini-batch of n rows that replica r of R
    trains on (all of them with one replica): the replicas' parts are contiguous, in order, and
    differ in size by one at most, so together they are the mini-batch one device would take."""
    n = tf.cast(num_rows, tf.int64)
    r = tf.cast(replica_id, tf.int64)
    return tf.range(n * r // num_replicas, n * (r + 1) // num_replicas)
