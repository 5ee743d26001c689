"""Where the compiled loop gets each mini-batch: the training split in memory, or streamed.

Both sources give step g (0-based, global) mini-batch ``g mod ⌈m/b⌉`` of epoch
``g div ⌈m/b⌉`` in that epoch's order (``tfnet.data.order``), so a run reads the same examples
in the same order either way, and a run's position is its global step alone.

- ``MemoryBatches``: the split held in a variable (one copy per replica under
  ``tf.distribute``), each mini-batch gathered by position inside the compiled call. The orders
  of the epochs a call reaches are drawn just before it (``EpochSampler``). The whole loop,
  gathers included, can be compiled by XLA.
- ``StreamBatches``: the split read from disk by a ``tf.data`` pipeline
  (``tfnet.data.stream``) whose iterator the compiled loop calls once per step; the pipeline
  starts at the loop's position, so a resumed run reads on from where its checkpoint left. The
  iterator cannot be compiled by XLA: the step alone is.

Under ``tf.distribute`` each replica trains on rows ``[n·r/R, n·(r+1)/R)`` of the global
mini-batch (``tfnet.data.order.replica_rows``).
"""

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

    compiles_with_xla = True

    def __init__(self, examples, seed, batch_size, strategy=None):
        strategy = strategy or tf.distribute.get_strategy()
        self.seed = int(seed)
        self.num_examples = int(examples.labels.shape[0])
        self.batch_size = int(batch_size)
        self.steps_per_epoch = order_lib.steps_per_epoch(self.num_examples, self.batch_size)
        # Held flat, [m, d], and reshaped after the gather: XLA gathers whole rows of a 2-D
        # array about 1.6× faster than of the image's 4-D one on the CPU.
        self._example_shape = examples.features.shape[1:]
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

    def take(self, order, batch, size):
        """``take(replica_id, num_replicas) -> (features, labels)``: that replica's rows of
        mini-batch ``batch`` (0-based) of the epoch in ``order``, of ``size`` examples (graph
        code)."""
        indices = order_lib.batch_indices(order, batch, self.batch_size, size)

        def take(replica_id, num_replicas):
            mine = indices
            if num_replicas > 1:
                mine = tf.gather(indices, order_lib.replica_rows(tf.size(indices), replica_id,
                                                                 num_replicas))
            features = tf.gather(self._features, mine)
            features = tf.reshape(features, tf.concat([tf.shape(mine), self._example_shape], 0))
            return features, tf.gather(self._labels, mine)

        return take


class StreamBatches:
    """The training split streamed from disk (a readable ``tfnet.data.Split``); see the module
    docstring."""

    compiles_with_xla = False

    def __init__(self, split, seed, batch_size):
        self.split, self.seed = split, int(seed)
        self.num_examples = split.num_examples
        self.batch_size = int(batch_size)
        self.steps_per_epoch = order_lib.steps_per_epoch(self.num_examples, self.batch_size)
        self._iterator, self._next_step = None, None

    def reserve(self, max_steps_per_call):
        del max_steps_per_call  # the stream reads one mini-batch per step, however many

    def before_call(self, start, num_steps):
        """The pipeline's iterator, started (again) at ``start`` unless it is there already."""
        del num_steps
        if self._iterator is None or self._next_step != start:
            dataset = stream_lib.training_batches(self.split, self.seed, self.batch_size, start)
            self._iterator = iter(dataset)
            self._next_step = start
        return (self._iterator,)

    def after_call(self, start, consumed):
        """The call read ``consumed`` mini-batches from ``start``."""
        self._next_step = start + consumed

    @property
    def argument_specs(self):
        dataset = stream_lib.training_batches(self.split, self.seed, self.batch_size)
        return (tf.data.IteratorSpec(dataset.element_spec),)

    def epoch(self, epoch, arguments):
        """What the steps of ``epoch`` share: the pipeline's iterator, at this step already."""
        del epoch
        return arguments[0]

    def take(self, iterator, batch, size):
        del batch  # the iterator is at this step already
        features, labels = iterator.get_next()
        # Its static shape, as the in-memory gather has: the same kernels run on it.
        features = tf.ensure_shape(features, (size, *self.split.example_shape))
        labels = tf.ensure_shape(labels, (size,))

        def take(replica_id, num_replicas):
            if num_replicas == 1:
                return features, labels
            rows = order_lib.replica_rows(tf.shape(labels)[0], replica_id, num_replicas)
            return tf.gather(features, rows), tf.gather(labels, rows)

        return take
