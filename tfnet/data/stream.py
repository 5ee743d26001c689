"""The training split's mini-batches read from disk as training goes: a ``tf.data`` pipeline.

``training_batches(split, seed, batch_size, start_step)`` yields the mini-batches of global
steps ``start_step, start_step + 1, ...`` in order: step g is mini-batch ``g mod ⌈m/b⌉`` of
epoch ``g div ⌈m/b⌉``, the examples ``order[i·b : (i + 1)·b]`` of that epoch's order
(``tfnet.data.order.epoch_order``), the same mini-batch the in-memory path gathers. So the
stream's position is the run's global step, which the checkpoint holds: a resumed run builds the
pipeline again from the restored step, and every mini-batch is the one an uninterrupted run
would have read. The first epoch's order is cut at the start step's mini-batch before anything
is read, so resuming mid-epoch reads nothing twice.

The examples are read by position (``Split.read_batches``: parallel reads, in order), and a few
mini-batches are prefetched while the compiled loop trains on the current one.
"""

import tensorflow as tf

from tfnet.data.order import epoch_order, steps_per_epoch
from tfnet.data.splits import bounded

# Mini-batches read ahead of the one being trained on.
PREFETCH = 4


def training_batches(split, seed, batch_size, start_step=0, prefetch=PREFETCH):
    """The mini-batches ``(features float32 [k, ...], labels int64 [k])`` of global steps
    ``start_step, start_step + 1, ...`` of a readable ``split`` (endless; see the module),
    ``prefetch`` of them read ahead."""
    m, b = split.num_examples, int(batch_size)
    start_epoch, skipped = divmod(int(start_step), steps_per_epoch(m, b))

    def epoch(e):
        first = tf.where(e == start_epoch, tf.constant(skipped * b, tf.int64), 0)
        order = tf.cast(epoch_order(m, seed, e), tf.int64)[first:]
        return split.read_batches(tf.data.Dataset.from_tensor_slices(order), b)

    epochs = tf.data.Dataset.range(start_epoch, 2**62)
    return bounded(epochs.flat_map(epoch).prefetch(prefetch))
