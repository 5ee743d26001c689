"""K training steps per compiled call.

One call of a ``TrainLoop`` runs ``num_steps`` steps inside one ``tf.function`` (a
``tf.while_loop``, optionally compiled by XLA), like Keras' ``steps_per_execution`` and Orbit's
``steps_per_loop``. The loop's position is the run's global step g (a checkpointed variable); step
g trains mini-batch ``g mod ⌈m/b⌉`` of epoch ``g div ⌈m/b⌉``, so one call may cross several
epochs. Everything a step needs comes from (seed, epoch, mini-batch):

- the mini-batch itself, from the training split's source (``tfnet.training.batches``: held in
  memory and gathered in the call, or streamed from disk), in the epoch's order;
- its augmentation, seeded by ``tfnet.data.augmentation_seed``;
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
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfnet import errors
from tfnet.data import order as order_lib


class _PerRunTracingNotice(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning for tfnet's own loop and
    evaluation functions: each run builds and traces its own, once (a process training several
    models, as the experiments and the study do, would otherwise be told to stop "retracing")."""

    OURS = ("TrainLoop._build.<locals>.loop", "make_evaluate.<locals>.evaluate_splits",
            "make_evaluate_stream.<locals>.evaluate")

    def filter(self, record):
        message = record.getMessage()
        return not ("tf.function retracing" in message and any(name in message for name in self.OURS))


def quiet_per_run_tracing_notice():
    """Installs ``_PerRunTracingNotice`` on TensorFlow's logger (once; when a run is built, never
    at import)."""
    logger = tf.get_logger()
    if not any(isinstance(f, _PerRunTracingNotice) for f in logger.filters):
        logger.addFilter(_PerRunTracingNotice())


class XlaUnavailableError(errors.TfnetError):
    """``jit_compile=on`` for a step that XLA cannot compile (e.g. MaxPool's gradient under op
    determinism, which has no deterministic XLA kernel)."""


class LoopState(NamedTuple):
    """The state a call carries from step to step (all tensors).

    Attributes:
      done: steps by which the position advanced so far (applied or skipped updates).
      skipped: of those, non-finite steps whose update was dropped.
      first_nonfinite_step: the global step number (1-based) of the call's first non-finite
        step, or 0.
      nonfinite_cost: its cost (NaN when there was none).
      stopped: a non-finite step ended the call (``stop_on_nonfinite``).
      costs: the logged mini-batch costs, ``[log_capacity + 1]`` (the last slot is written by
        the steps that are not logged, and never read).
    """

    done: tf.Tensor
    skipped: tf.Tensor
    first_nonfinite_step: tf.Tensor
    nonfinite_cost: tf.Tensor
    stopped: tf.Tensor
    costs: tf.Tensor


@dataclasses.dataclass(frozen=True)
class LoopOutput:
    """What one call of the loop did.

    Attributes:
      start: the position (global step) before the call.
      steps: steps by which the position advanced (applied or skipped updates).
      skipped: of those, non-finite steps whose update was dropped.
      first_nonfinite_step: the global step number (1-based) of the first non-finite step of
        the call, or 0 if none.
      nonfinite_cost: the cost of that step (NaN when there was none).
      stopped: a non-finite step ended the call (``stop_on_nonfinite``); it was not applied and
        the position is the step before it.
      logged: ``[(step, cost), ...]``, the mini-batch cost of each step of the call that is a
        multiple of ``log_every_steps``.
      seconds: how long the call took (set by the controller that timed it; 0.0 otherwise).
    """

    start: int
    steps: int
    skipped: int
    first_nonfinite_step: int
    nonfinite_cost: float
    stopped: bool
    logged: list
    seconds: float = 0.0

    @property
    def end(self):
        """The position after the call."""
        return self.start + self.steps


class TrainLoop:
    """Runs the training step K times per compiled call.

    Args:
      train_step: ``take -> (cost, finite)``, from ``tfnet.training.step.make_train_step``.
      batches: the training split's source of mini-batches (``tfnet.training.batches``).
      seed: the run's seed, which keys every epoch's augmentation.
      position: the global step, an int64 ``tf.Variable`` the loop reads and advances.
      augment: ``augment(features, seed) -> features`` (``tfnet.augment.build``) applied to each
        training mini-batch, or None. Default None.
      stop_on_nonfinite: end a call at a non-finite step (True) or skip it and go on (False).
        Default True.
      log_every_steps: the steps whose cost is returned. Default 10.
      log_capacity: the most logged costs one call returns; a call runs at most
        ``log_capacity · log_every_steps`` steps. Default 1024.
      strategy: the ``tf.distribute`` strategy the step runs under. Default: the current one.
      jit_compile: compile the whole loop with XLA (one device only). Default False.
      xla_fallback: where XLA cannot compile the step (an op without a deterministic XLA kernel
        under op determinism, such as MaxPool's gradient): None raises
        ``XlaUnavailableError``; a callable ``xla_fallback(reason)`` is told and the loop runs
        without XLA. Default None.
    """

    def __init__(self, train_step, batches, seed, position, *, augment=None,
                 stop_on_nonfinite=True, log_every_steps=10, log_capacity=1024, strategy=None,
                 jit_compile=False, xla_fallback=None):
        self.strategy = strategy or tf.distribute.get_strategy()
        if jit_compile and self.strategy.num_replicas_in_sync > 1:
            raise ValueError(
                "jit_compile must be False under a strategy with several replicas (XLA compiles "
                f"one device's program). Received: jit_compile={jit_compile}"
            )
        self.batches = batches
        self.num_examples = batches.num_examples
        self.batch_size = batches.batch_size
        self.steps_per_epoch = batches.steps_per_epoch
        self.log_every_steps = int(log_every_steps)
        self.log_capacity = int(log_capacity)
        self.max_steps_per_call = min(self.log_capacity * self.log_every_steps,
                                      getattr(batches, "max_steps_per_call", 2**62))
        batches.reserve(self.max_steps_per_call)
        self.position = position
        self._seed = int(seed)
        self._augment = augment
        self._stop_on_nonfinite = bool(stop_on_nonfinite)
        self._train_step = train_step
        self._xla_fallback = xla_fallback
        self._compiled_once = False
        quiet_per_run_tracing_notice()
        self._build(bool(jit_compile))

    def _build(self, jit_compile):
        """The compiled call, by XLA or not."""
        self.jit_compile = jit_compile

        def loop(num_steps, *arguments):  # a function of this loop's own: traced once
            return self._loop(num_steps, arguments)

        self._run = tf.function(
            loop, jit_compile=jit_compile, autograph=False,
            input_signature=[tf.TensorSpec([], tf.int64, name="num_steps"),
                             *self.batches.argument_specs])

    def __call__(self, num_steps):
        """Runs ``num_steps`` steps (at most ``max_steps_per_call``); returns a ``LoopOutput``."""
        if not 1 <= num_steps <= self.max_steps_per_call:
            raise ValueError(f"num_steps must be in [1, {self.max_steps_per_call}]. "
                             f"Received: num_steps={num_steps}")
        start = int(self.position.numpy())
        arguments = self.batches.before_call(start, num_steps)
        result = self._first_run(num_steps, arguments) if not self._compiled_once else self._run(
            tf.constant(num_steps, tf.int64), *arguments)
        result = {name: value.numpy() for name, value in result.items()}
        steps, stopped = int(result["steps"]), bool(result["stopped"])
        self.batches.after_call(start, steps + int(stopped))  # a stopping step read its batch
        every = self.log_every_steps
        logged_steps = range((start // every + 1) * every, start + steps + 1, every)
        logged = [(step, float(cost)) for step, cost in zip(logged_steps, result["costs"])]
        return LoopOutput(start=start, steps=steps, skipped=int(result["skipped"]),
                          first_nonfinite_step=int(result["first_nonfinite_step"]),
                          nonfinite_cost=float(result["nonfinite_cost"]), stopped=stopped,
                          logged=logged)

    def _first_run(self, num_steps, arguments):
        """The first call, which compiles: where XLA has no kernel for an op of the step, an
        ``XlaUnavailableError`` (nothing has run: compiling fails before), or with an
        ``xla_fallback`` the same call without XLA (the same for every run of this config, so
        runs stay bit-identical to each other)."""
        try:
            result = self._run(tf.constant(num_steps, tf.int64), *arguments)
        except tf.errors.UnimplementedError as error:
            if not self.jit_compile:
                raise
            reason = next((line.strip() for line in error.message.splitlines()
                           if "XLA" in line or "xla" in line), error.message.splitlines()[0])
            if self._xla_fallback is None:
                raise XlaUnavailableError(
                    f"jit_compile must be off or auto for this run: XLA cannot compile its "
                    f"training step ({reason}). Received: jit_compile=on") from None
            self._xla_fallback(reason)
            self._build(False)
            arguments = self.batches.before_call(int(self.position.numpy()), num_steps)
            result = self._run(tf.constant(num_steps, tf.int64), *arguments)
        self._compiled_once = True
        return result

    def _loop(self, num_steps, arguments):
        """Epochs in an outer ``tf.while_loop``, its full mini-batches in an inner one, then its
        smaller last mini-batch, if any: no per-step branch (and, compiled by XLA, static
        shapes in every step)."""
        start = self.position.read_value()
        spe, b = self.steps_per_epoch, self.batch_size
        full_batches = self.num_examples // b
        last_size = self.num_examples - full_batches * b  # 0: every mini-batch is full

        def running(state):
            return tf.logical_and(state.done < num_steps, tf.logical_not(state.stopped))

        def one_step(state, epoch, shared, batch, size):
            take = self.batches.take(shared, batch, size, state.done)  # done: the call's step
            cost, finite = self._train_step(self._augmented(take, epoch, batch))
            return self._record(state, start, cost, finite)

        def epoch_body(*state):
            state = LoopState(*state)
            epoch, first_batch = (start + state.done) // spe, (start + state.done) % spe
            shared = self.batches.epoch(epoch, arguments)  # e.g. the epoch's order, once
            batch, *inner = tf.while_loop(
                lambda batch, *s: tf.logical_and(batch < full_batches, running(LoopState(*s))),
                lambda batch, *s: (batch + 1, *one_step(LoopState(*s), epoch, shared, batch, b)),
                (first_batch, *state),
            )
            state = LoopState(*inner)
            if last_size:
                state = LoopState(*tf.cond(
                    tf.logical_and(batch == full_batches, running(state)),
                    lambda: one_step(state, epoch, shared, full_batches, last_size),
                    lambda: state))
            return tuple(state)

        zero = tf.constant(0, tf.int64)
        initial = LoopState(zero, zero, zero, tf.constant(np.nan, tf.float32), tf.constant(False),
                            tf.zeros([self.log_capacity + 1], tf.float32))
        final = LoopState(*tf.while_loop(lambda *s: running(LoopState(*s)), epoch_body,
                                         tuple(initial)))
        self.position.assign_add(final.done)
        return dict(steps=final.done, skipped=final.skipped,
                    first_nonfinite_step=final.first_nonfinite_step,
                    nonfinite_cost=final.nonfinite_cost, stopped=final.stopped,
                    costs=final.costs[:self.log_capacity])

    def _record(self, state, start, cost, finite):
        """The loop's state after the step of index ``start + done``: whether it advanced, the
        non-finite bookkeeping, and its cost in the buffer when its number is logged."""
        step = start + state.done + 1  # the global step number of this step
        bad = tf.logical_not(finite)
        first = tf.logical_and(bad, state.first_nonfinite_step == 0)
        advance = finite if self._stop_on_nonfinite else tf.constant(True)
        # Buffer slot of this step's cost; log_capacity is a slot that nobody reads.
        every = self.log_every_steps
        logged = tf.logical_and(advance, step % every == 0)
        slot = tf.where(logged, step // every - start // every - 1, self.log_capacity)
        return LoopState(
            done=state.done + tf.cast(advance, tf.int64),
            skipped=state.skipped + tf.cast(tf.logical_and(bad, advance), tf.int64),
            first_nonfinite_step=tf.where(first, step, state.first_nonfinite_step),
            nonfinite_cost=tf.where(first, cost, state.nonfinite_cost),
            stopped=tf.logical_and(bad, tf.logical_not(advance)),
            costs=tf.tensor_scatter_nd_update(state.costs, tf.reshape(slot, [1, 1]),
                                              tf.reshape(cost, [1])),
        )

    def _augmented(self, take, epoch, batch):
        """``take`` with each replica's part of the mini-batch augmented, if augmenting."""
        if self._augment is None:
            return take

        def augmented(replica_id, num_replicas):
            features, labels = take(replica_id, num_replicas)
            seed = order_lib.augmentation_seed(self._seed, epoch, batch, replica_id)
            return self._augment(features, seed), labels

        return augmented
