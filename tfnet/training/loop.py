"""K training steps per compiled call, the mini-batches cut from the split in memory.

One call of a ``TrainLoop`` runs ``num_steps`` steps inside one ``tf.function`` (a
``tf.while_loop``, optionally compiled by XLA), like Keras' ``steps_per_execution`` and Orbit's
``steps_per_loop``. The loop's position is the run's global step g (a checkpointed variable); step
g trains mini-batch ``g mod ⌈m/b⌉`` of epoch ``g div ⌈m/b⌉``, so one call may cross several
epochs. Everything a step needs is computed inside the call from (seed, epoch, mini-batch):

- the epoch's order, ``tfnet.data.epoch_orders`` (the orders of the epochs a call reaches are
  drawn together just before it, outside the compiled loop, whose sort is slow on the CPU);
- the mini-batch, gathered from the training split held in a variable (under ``tf.distribute``
  each replica holds a copy and gathers its part of the global batch itself);
- the augmentation of that mini-batch, seeded by ``tfnet.data.augmentation_seed``;
- the step itself, ``tfnet.training.step.make_train_step``: dropout masks come from the layers'
  checkpointed seed generators, the learning rate from the optimiser's step count.

So a call of K steps does exactly what K calls of one step do, in the same order, and its result
does not depend on K: the run is bit-identical for any K (with op determinism), and resuming at
any step needs only the checkpointed variables.

Inside the loop, a step whose cost or gradient is not finite is never applied (the step's own
guard); with ``stop_on_nonfinite`` the call ends there, the position left before that step,
otherwise the step is counted as skipped and the loop goes on. The mini-batch cost of every step
g with g mod ``log_every_steps`` = 0 is kept in a fixed-size buffer that the call returns, so the
host writes the same TensorBoard points for any K.
"""

import dataclasses
import logging

import numpy as np
import tensorflow as tf

from tfnet import data as data_lib


class _PerRunTracingNotice(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning for tfnet's own loop and
    evaluation functions: each run builds and traces its own, once (a process training several
    models, as the experiments and the study do, would otherwise be told to stop "retracing")."""

    OURS = ("TrainLoop.__init__.<locals>.loop", "make_evaluate.<locals>.evaluate")

    def filter(self, record):
        message = record.getMessage()
        return not ("tf.function retracing" in message and any(name in message for name in self.OURS))


def quiet_per_run_tracing_notice():
    """Installs ``_PerRunTracingNotice`` on TensorFlow's logger (once; when a run is built, never
    at import)."""
    logger = tf.get_logger()
    if not any(isinstance(f, _PerRunTracingNotice) for f in logger.filters):
        logger.addFilter(_PerRunTracingNotice())


@dataclasses.dataclass(frozen=True)
class LoopOutput:
    """What one call of the loop did.

    Attributes:
      steps: steps by which the position advanced (applied or skipped updates).
      skipped: of those, non-finite steps whose update was dropped.
      first_nonfinite_step: the global step number (1-based) of the first non-finite step of
        the call, or 0 if none.
      nonfinite_cost: the cost of that step (NaN when there was none).
      stopped: a non-finite step ended the call (``stop_on_nonfinite``); it was not applied and
        the position is the step before it.
      logged: ``[(step, cost), ...]``, the mini-batch cost of each step of the call that is a
        multiple of ``log_every_steps``.
    """

    steps: int
    skipped: int
    first_nonfinite_step: int
    nonfinite_cost: float
    stopped: bool
    logged: list


class TrainLoop:
    """Runs the training step K times per compiled call.

    Args:
      train_step: ``take -> (cost, finite)``, from ``tfnet.training.step.make_train_step``.
      examples: the training split in memory (``tfnet.data.Examples``).
      batch_size: b, the global mini-batch size.
      seed: the run's seed, which keys every epoch's order and augmentation.
      position: the global step, an int64 ``tf.Variable`` the loop reads and advances.
      augment: ``augment(features, seed) -> features`` (``tfnet.augment.build``) applied to each
        training mini-batch, or None. Default None.
      stop_on_nonfinite: end a call at a non-finite step (True) or skip it and go on (False).
        Default True.
      log_every_steps: the steps whose cost is returned. Default 10.
      log_capacity: the most logged costs one call returns; a call runs at most
        ``log_capacity · log_every_steps`` steps. Default 1024.
      strategy: the ``tf.distribute`` strategy the step runs under. Default: the current one.
      jit_compile: compile the loop with XLA (one device only). Default False.
    """

    def __init__(self, train_step, examples, batch_size, seed, position, *, augment=None,
                 stop_on_nonfinite=True, log_every_steps=10, log_capacity=1024, strategy=None,
                 jit_compile=False):
        self.strategy = strategy or tf.distribute.get_strategy()
        if jit_compile and self.strategy.num_replicas_in_sync > 1:
            raise ValueError(
                "jit_compile must be False under a strategy with several replicas (XLA compiles "
                f"one device's program). Received: jit_compile={jit_compile}"
            )
        self.num_examples = int(examples.labels.shape[0])
        self.batch_size = int(batch_size)
        self.steps_per_epoch = data_lib.steps_per_epoch(self.num_examples, self.batch_size)
        self.log_every_steps = int(log_every_steps)
        self.log_capacity = int(log_capacity)
        self.max_steps_per_call = self.log_capacity * self.log_every_steps
        self.position = position
        self._train_step = train_step
        self._seed = int(seed)
        self._augment = augment
        self._stop_on_nonfinite = bool(stop_on_nonfinite)
        self.jit_compile = bool(jit_compile)
        # Examples are held flat, [m, d], and reshaped after the gather: XLA gathers whole rows
        # of a 2-D array about 1.6× faster than of the image's 4-D one on the CPU.
        self._example_shape = examples.features.shape[1:]
        flat = tf.reshape(examples.features, [self.num_examples, -1])
        with self.strategy.scope():  # one copy per replica, read where the replica runs
            self._features = tf.Variable(flat, trainable=False, name="train_features")
            self._labels = tf.Variable(examples.labels, trainable=False, name="train_labels")
        # The orders of the epochs a call reaches, drawn before it (see __call__).
        epochs_per_call = -(-self.max_steps_per_call // self.steps_per_epoch) + 1
        self._orders = tf.Variable(tf.zeros([epochs_per_call, self.num_examples], tf.int32),
                                   trainable=False, name="epoch_orders")
        self._draw_orders = tf.function(
            self._draw_orders_eagerly, autograph=False,
            input_signature=[tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int32)])

        def loop(num_steps):  # a function of this loop's own: traced once, never retraced
            return self._loop(num_steps)

        quiet_per_run_tracing_notice()
        self._run = tf.function(loop, jit_compile=self.jit_compile, autograph=False,
                                input_signature=[tf.TensorSpec([], tf.int64, name="num_steps")])

    def __call__(self, num_steps):
        """Runs ``num_steps`` steps (at most ``max_steps_per_call``); returns a ``LoopOutput``."""
        if not 1 <= num_steps <= self.max_steps_per_call:
            raise ValueError(f"num_steps must be in [1, {self.max_steps_per_call}]. "
                             f"Received: num_steps={num_steps}")
        start = int(self.position.numpy())
        first_epoch = start // self.steps_per_epoch
        last_epoch = (start + num_steps - 1) // self.steps_per_epoch
        self._draw_orders(tf.constant(first_epoch, tf.int64),
                          tf.constant(last_epoch - first_epoch + 1, tf.int32))
        result = {name: value.numpy() for name, value in self._run(tf.constant(num_steps, tf.int64)).items()}
        steps = int(result["steps"])
        every = self.log_every_steps
        logged_steps = range((start // every + 1) * every, start + steps + 1, every)
        logged = [(step, float(cost)) for step, cost in zip(logged_steps, result["costs"])]
        return LoopOutput(steps=steps, skipped=int(result["skipped"]),
                          first_nonfinite_step=int(result["first_nonfinite_step"]),
                          nonfinite_cost=float(result["nonfinite_cost"]),
                          stopped=bool(result["stopped"]), logged=logged)

    def _loop(self, num_steps):
        """Epochs in an outer ``tf.while_loop``, each epoch's order drawn once at its top, its
        full mini-batches in an inner one, then its smaller last mini-batch, if any: no
        per-step branch (and, compiled by XLA, static shapes in every step)."""
        start = self.position.read_value()
        spe, b = self.steps_per_epoch, self.batch_size
        full_batches = self.num_examples // b
        last_size = self.num_examples - full_batches * b  # 0: every mini-batch is full

        def running(state):
            done, stopped = state[0], state[4]
            return tf.logical_and(done < num_steps, tf.logical_not(stopped))

        def epoch_body(*state):
            epoch, first_batch = (start + state[0]) // spe, (start + state[0]) % spe
            order = self._order(epoch)

            def one_step(state, batch, size):
                indices = data_lib.batch_indices(order, batch, b, size)
                cost, finite = self._train_step(self._taker(indices, epoch, batch))
                return self._record(state, start, cost, finite)

            batch, *state = tf.while_loop(
                lambda batch, *state: tf.logical_and(batch < full_batches, running(state)),
                lambda batch, *state: (batch + 1, *one_step(state, batch, b)),
                (first_batch, *state),
            )
            if last_size:
                state = tf.cond(tf.logical_and(batch == full_batches, running(state)),
                                lambda: one_step(state, full_batches, last_size),
                                lambda: tuple(state))
            return tuple(state)

        zero = tf.constant(0, tf.int64)
        initial = (zero, zero, zero, tf.constant(np.nan, tf.float32), tf.constant(False),
                   tf.zeros([self.log_capacity + 1], tf.float32))
        steps, skipped, first_bad, bad_cost, stopped, costs = tf.while_loop(
            lambda *state: running(state), epoch_body, initial)
        self.position.assign_add(steps)
        return dict(steps=steps, skipped=skipped, first_nonfinite_step=first_bad,
                    nonfinite_cost=bad_cost, stopped=stopped, costs=costs[:self.log_capacity])

    def _record(self, state, start, cost, finite):
        """The loop's state after the step of index ``start + done``: whether it advanced, the
        non-finite bookkeeping, and its cost in the buffer when its number is logged."""
        done, skipped, first_bad, bad_cost, stopped, costs = state
        step = start + done + 1  # the global step number of this step
        bad = tf.logical_not(finite)
        first = tf.logical_and(bad, first_bad == 0)
        first_bad = tf.where(first, step, first_bad)
        bad_cost = tf.where(first, cost, bad_cost)
        advance = finite if self._stop_on_nonfinite else tf.constant(True)
        stopped = tf.logical_and(bad, tf.logical_not(advance))
        skipped += tf.cast(tf.logical_and(bad, advance), tf.int64)
        # Buffer slot of this step's cost; log_capacity is a slot that nobody reads.
        every = self.log_every_steps
        logged = tf.logical_and(advance, step % every == 0)
        slot = tf.where(logged, step // every - start // every - 1, self.log_capacity)
        costs = tf.tensor_scatter_nd_update(costs, tf.reshape(slot, [1, 1]), tf.reshape(cost, [1]))
        return done + tf.cast(advance, tf.int64), skipped, first_bad, bad_cost, stopped, costs

    def _draw_orders_eagerly(self, first_epoch, count):
        """Writes the orders of epochs ``first_epoch … + count − 1`` into ``_orders``' first rows.

        Outside the compiled loop on purpose: XLA on the CPU sorts through a comparator called
        per comparison, about ten times slower than TensorFlow's own kernel, and a sort per epoch
        inside the loop cost a third of each step of a 2-64-32-2 network on 800 examples.
        """
        orders = data_lib.epoch_orders(self.num_examples, self._seed, first_epoch, count)
        self._orders[:count].assign(orders)

    def _order(self, epoch):
        """The order of ``epoch``, one of the epochs this call reaches (drawn before it)."""
        first_epoch = self.position.read_value() // self.steps_per_epoch
        return tf.gather(self._orders, epoch - first_epoch)

    def _taker(self, indices, epoch, batch):
        """``take(replica_id, num_replicas)`` for the step: that replica's part of the batch."""

        def take(replica_id, num_replicas):
            mine = indices
            if num_replicas > 1:  # replica r takes positions [n·r/R, n·(r+1)/R) of the n
                n = tf.size(indices, out_type=tf.int64)
                r = tf.cast(replica_id, tf.int64)
                mine = tf.gather(indices, tf.range(n * r // num_replicas, n * (r + 1) // num_replicas))
            features = tf.gather(self._features, mine)
            features = tf.reshape(features, tf.concat([tf.shape(mine), self._example_shape], 0))
            labels = tf.gather(self._labels, mine)
            if self._augment is not None:
                seed = data_lib.augmentation_seed(self._seed, epoch, batch, replica_id)
                features = self._augment(features, seed)
            return features, labels

        return take
