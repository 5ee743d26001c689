"""Where the compiled loop gets each mini-batch: the training split in memory, or streamed.

Both sources give step g (0-based, global) mini-batch ``g mod ⌈m/b⌉`` of epoch
``g div ⌈m/b⌉`` in that epoch's order (``tfnet.data.order``), so a run reads the same examples
in the same order either way, and a run's position is its global step alone.

- ``MemoryBatches``: the split held in a variable (one copy per replica under
  ``tf.distribute``), each mini-batch gathered by position inside the compiled call. The orders
  of the epochs a call reaches are drawn just before it (``EpochSampler``). The whole loop,
  gathers included, can be compiled by XLA.
- ``StreamBatches``: the split read from disk: before each call, the examples of the call's
  steps (``tfnet.data.stream``, from the loop's position, so a resumed run reads on from where
  its checkpoint left) are read in one go into a window held in a variable, which the compiled
  loop gathers from as from the split in memory (XLA included).

Under ``tf.distribute`` each replica trains on rows ``[n·r/R, n·(r+1)/R)`` of the global
mini-batch (``tfnet.data.order.replica_rows``).
"""

import concurrent.futures

import numpy as np
import tensorflow as tf

from tfnet.data import order as order_lib
from tfnet.data import stream as stream_lib


class EpochSampler:
    """The orders of the epochs one loop call reaches, drawn before the call into a variable.

    Outside the compiled loop on purpose: XLA on the CPU sorts through a comparator called per
    comparison, about ten times slower than TensorFlow's own kernel, and a sort per epoch inside
    the loop cost a third of each step of a 2-64-32-2 network on 800 examples.
    """

    def __init__(self, num_examples, seed, steps_per_epoch, max_steps_per_call):
        self.num_examples, self.seed, self.steps_per_epoch = num_examples, int(seed), steps_per_epoch
        epochs_per_call = -(-max_steps_per_call // steps_per_epoch) + 1
        self._first_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="first_epoch")
        self._orders = tf.Variable(tf.zeros([epochs_per_call, num_examples], tf.int32),
                                   trainable=False, name="epoch_orders")
        self._draw = tf.function(self._draw_eagerly, autograph=False, input_signature=[
            tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int32)])

    def before_call(self, start, num_steps):
        """Draws the orders of the epochs of steps ``start … start + num_steps − 1``."""
        first_epoch = start // self.steps_per_epoch
        last_epoch = (start + num_steps - 1) // self.steps_per_epoch
        self._draw(tf.constant(first_epoch, tf.int64),
                   tf.constant(last_epoch - first_epoch + 1, tf.int32))

    def _draw_eagerly(self, first_epoch, count):
        self._first_epoch.assign(first_epoch)
        self._orders[:count].assign(
            order_lib.epoch_orders(self.num_examples, self.seed, first_epoch, count))

    def order(self, epoch):
        """The order of ``epoch``, one of the epochs this call reaches (graph code)."""
        return tf.gather(self._orders, epoch - self._first_epoch)


class MemoryBatches:
    """The training split in memory (``tfnet.data.Examples``); see the module docstring."""

    def __init__(self, examples, seed, batch_size, strategy=None):
        strategy = strategy or tf.distribute.get_strategy()
        self.seed = int(seed)
        self.num_examples = int(examples.labels.shape[0])
        self.batch_size = int(batch_size)
        self.steps_per_epoch = order_lib.steps_per_epoch(self.num_examples, self.batch_size)
        # Held flat, [m, d], and reshaped after the gather: XLA gathers whole rows of a 2-D
        # array about 1.6× faster than of the image's 4-D one on the CPU.
        self._example_shape = tuple(examples.features.shape[1:])
        flat = tf.reshape(examples.features, [self.num_examples, -1])
        with strategy.scope():  # one copy per replica, read where the replica runs
            self._features = tf.Variable(flat, trainable=False, name="train_features")
            self._labels = tf.Variable(examples.labels, trainable=False, name="train_labels")
        self.sampler = None

    def reserve(self, max_steps_per_call):
        """Sizes the epoch orders for calls of up to ``max_steps_per_call`` steps (the loop's)."""
        self.sampler = EpochSampler(self.num_examples, self.seed, self.steps_per_epoch,
                                    max_steps_per_call)

    def before_call(self, start, num_steps):
        self.sampler.before_call(start, num_steps)
        return ()

    def after_call(self, start, consumed):
        del start, consumed  # nothing to keep: each call reads by position

    @property
    def argument_specs(self):
        return ()

    def epoch(self, epoch, arguments):
        """What the steps of ``epoch`` share: its order (graph code, once per epoch)."""
        del arguments
        return self.sampler.order(epoch)

    def take(self, order, batch, size, slot):
        """``take(replica_id, num_replicas) -> (features, labels)``: that replica's rows of
        mini-batch ``batch`` (0-based) of the epoch in ``order``, of ``size`` examples (graph
        code)."""
        del slot
        indices = order_lib.batch_indices(order, batch, self.batch_size, size)
        return _gather_rows(self._features, self._labels, indices, self._example_shape)


def _gather_rows(features, labels, positions, example_shape):
    """``take(replica_id, num_replicas)``: that replica's part (``order.replica_rows``) of the
    rows at ``positions`` of ``features`` (held flat, [n, d]) and ``labels``, reshaped to
    ``example_shape``."""

    def take(replica_id, num_replicas):
        mine = positions
        if num_replicas > 1:
            mine = tf.gather(positions, order_lib.replica_rows(tf.size(positions), replica_id,
                                                               num_replicas))
        rows = tf.gather(features, mine)
        rows = tf.reshape(rows, tf.concat([tf.shape(mine, out_type=tf.int32),
                                           tf.constant(example_shape, tf.int32)], 0))
        return rows, tf.gather(labels, mine)

    return take


class StreamBatches:
    """The training split streamed from disk (a readable ``tfnet.data.Split``): before each
    call, the examples of its steps are read (``Split.read_rows``, one read for the call) into a
    window the call gathers from, slot i holding step ``start + i`` (``tfnet.data.stream``). So
    the compiled loop is the in-memory one — XLA over the whole loop, the same gathers — and a
    call is at most ``window_steps`` steps.

    Args:
      split: the readable training split.
      seed, batch_size: the run's.
      strategy: the ``tf.distribute`` strategy (the window has a copy per replica).
      window_bytes: about the largest window, as float32 (default 64 MB): it sets
        ``window_steps``, at least 1 and at most 1,024.
    """

    def __init__(self, split, seed, batch_size, strategy=None, window_bytes=64 * 2**20):
        strategy = strategy or tf.distribute.get_strategy()
        self.split, self.seed = split, int(seed)
        self.num_examples = split.num_examples
        self.batch_size = b = int(batch_size)
        self.steps_per_epoch = order_lib.steps_per_epoch(self.num_examples, b)
        self._example_shape = tuple(split.example_shape)
        width = int(np.prod(self._example_shape, dtype=np.int64))
        self.window_steps = int(min(1024, max(1, window_bytes // (4 * b * width))))
        with strategy.scope():
            self._features = tf.Variable(tf.zeros([self.window_steps * b, width]),
                                         trainable=False, name="window_features")
            self._labels = tf.Variable(tf.zeros([self.window_steps * b], tf.int64),
                                       trainable=False, name="window_labels")
        self._positions = stream_lib.WindowPositions(self.num_examples, seed, b)
        self._labels_of = np.asarray(split.labels, np.int64)
        self._ahead = None  # (first step, the future of _read_steps from it)
        self._reader = concurrent.futures.ThreadPoolExecutor(1, "tfnet-stream")
        self._read = tf.function(lambda positions: tf.reshape(split.read_rows(positions),
                                                              [-1, width]),
                                 input_signature=[tf.TensorSpec([None], tf.int64)])

    def reserve(self, max_steps_per_call):
        del max_steps_per_call  # a call is bounded by the window instead (max_steps_per_call)

    @property
    def max_steps_per_call(self):
        return self.window_steps

    def before_call(self, start, num_steps):
        """Puts the examples of steps ``start … start + num_steps − 1`` into the window, then
        starts reading the next ``window_steps`` steps' in a thread of its own, which the next
        call takes if it starts where this one ends (it does, but after a restore)."""
        if self._ahead is not None and self._ahead[0] == start:
            positions, features = self._ahead[1].result()
        else:
            positions, features = self._read_steps(start, self.window_steps)
        # The whole window in one assignment, which can take the read's buffer over (a slice
        # assignment copies, and cost a quarter of a step); slots past the call are not used.
        self._features.assign(features)
        self._labels.assign(self._labels_of[positions])
        following = start + num_steps
        self._ahead = (following, self._reader.submit(self._read_steps, following,
                                                      self.window_steps))
        return ()

    def _read_steps(self, start, num_steps):
        """``(positions, features)`` of steps ``start … start + num_steps − 1``, in window
        layout (a call of fewer steps uses the first slots)."""
        positions = self._positions.positions(start, num_steps)
        return positions, self._read(tf.constant(positions))

    def after_call(self, start, consumed):
        del start, consumed  # the window was read before the call

    @property
    def argument_specs(self):
        return ()

    def epoch(self, epoch, arguments):
        del epoch, arguments
        return None

    def take(self, shared, batch, size, slot):
        """``take(replica_id, num_replicas) -> (features, labels)``: the rows of window slot
        ``slot`` (the call's step of that index: its mini-batch, ``size`` examples)."""
        del shared, batch
        positions = tf.cast(slot, tf.int64) * self.batch_size + tf.range(size, dtype=tf.int64)
        return _gather_rows(self._features, self._labels, positions, self._example_shape)
