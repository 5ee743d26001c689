"""Between compiled loop calls: the controller runs the loop K steps at a time and calls actions.

Orbit's shape (TF Model Garden ``orbit/controller.py``): a ``Controller`` knows only the loop,
how many steps each call should run (``steps_per_call(position)``) and a list of *actions*, each
called with the call's ``LoopOutput`` after every call, in order. Everything else a run does
between calls is an action of its own (``tfnet.training.actions``), testable alone with a fake
loop: the non-finite guard, the mini-batch cost summaries, the progress bar, evaluation,
early stopping, SIGINT / SIGTERM, checkpoints and the user's own actions. An action that is a
context manager is entered before the first call and left after the last (or on an error);
one with ``begin()`` / ``end()`` has them called before the first call and after the last. The
run ends at ``total_steps``, or earlier when ``stop_when()`` says so (early stopping's patience
used up).

``StepsPerCall`` chooses K: up to the next event — the end of an evaluated epoch, a checkpoint
due by step count, the end of training — and at most ``steps_per_loop`` steps (0: as many as
last about ``SECONDS_PER_CALL``, so that SIGINT / SIGTERM are answered within a second or two).
"""

import contextlib
import dataclasses
import time

# A call of the loop should last about this long at most (once its speed is known).
SECONDS_PER_CALL = 1.0
# Steps of the first call, whose time includes tracing and compiling.
FIRST_CALL_STEPS = 16


class Controller:
    """Runs ``loop`` from its position to ``total_steps``, calling ``actions`` after each call.

    Args:
      loop: called as ``loop(num_steps) -> LoopOutput``; its ``position`` (a variable) is read.
      total_steps: the position at which training ends.
      steps_per_call: ``steps_per_call(position) -> K``, the steps of the next call.
      actions: callables ``action(output)``, in the order they run after each call.
      stop_when: ``stop_when() -> bool``, checked before each call: True ends the run early.
    """

    def __init__(self, loop, total_steps, steps_per_call, actions=(), stop_when=lambda: False):
        self.loop = loop
        self.total_steps = total_steps
        self.steps_per_call = steps_per_call
        self.actions = tuple(actions)
        self.stop_when = stop_when

    @property
    def position(self):
        return int(self.loop.position.numpy())

    def run(self):
        """Trains to the end; returns True when ``stop_when`` ended the run early."""
        with contextlib.ExitStack() as entered:
            for action in self.actions:
                if hasattr(action, "__enter__"):
                    entered.enter_context(action)
            self._call_each("begin")
            stopped = self.stop_when()
            while self.position < self.total_steps and not stopped:
                num_steps = self.steps_per_call(self.position)
                started = time.perf_counter()
                output = self.loop(num_steps)
                output = dataclasses.replace(output, seconds=time.perf_counter() - started)
                for action in self.actions:
                    action(output)
                stopped = self.stop_when()
            self._call_each("end")
        return stopped

    def _call_each(self, hook):
        for action in self.actions:
            if hasattr(action, hook):
                getattr(action, hook)()


class StepsPerCall:
    """K for each call, and the loop's steady-state speed (an action: it times every call).

    Args:
      total_steps: the end of training.
      evaluation: the ``Evaluation`` action, for the step of its next evaluation.
      checkpoint_every_steps: checkpoints due by step count (0: none), each a loop boundary.
      steps_per_loop: a fixed K (0: automatic, see the module docstring).
      max_steps_per_call: the most steps the loop runs per call.
    """

    def __init__(self, total_steps, evaluation, checkpoint_every_steps, steps_per_loop,
                 max_steps_per_call):
        self.total_steps, self.evaluation = total_steps, evaluation
        self.checkpoint_every_steps = checkpoint_every_steps
        self.steps_per_loop, self.max_steps_per_call = steps_per_loop, max_steps_per_call
        self.seconds_per_step = None  # of the last timed call
        self.last_steps = FIRST_CALL_STEPS
        self.calls = 0
        # Steady-state speed: steps and seconds of every call but the first (which compiles).
        self.timed_steps, self.timed_seconds = 0, 0.0

    def __call__(self, position):
        events = [self.total_steps, self.evaluation.next_evaluation_step(position)]
        every = self.checkpoint_every_steps
        if every:
            events.append((position // every + 1) * every)
        steps = min(min(events) - position, self.max_steps_per_call)
        if self.steps_per_loop:
            return max(1, min(steps, self.steps_per_loop))
        if self.seconds_per_step is None:
            bound = FIRST_CALL_STEPS
        else:  # grow at most 8× a call, so one slow call cannot be followed by a huge one
            bound = min(8 * self.last_steps, int(SECONDS_PER_CALL / self.seconds_per_step))
        return max(1, min(steps, bound))

    def action(self, output):
        """Notes the call's speed (every call but the first, which traces and compiles)."""
        if not output.steps:
            return
        if self.calls:
            self.seconds_per_step = output.seconds / output.steps
            self.timed_steps += output.steps
            self.timed_seconds += output.seconds
        self.calls += 1
        self.last_steps = output.steps

    @property
    def steady_seconds_per_step(self):
        """The loop's time per step over every call but the first; None before two calls."""
        return self.timed_seconds / self.timed_steps if self.timed_steps else None
