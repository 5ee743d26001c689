"""Checkpoints between calls: due by step count and/or by time, and one at the end."""

import time


class Checkpoints:
    """After each call, a checkpoint when one is due: every ``every_steps`` steps, or when
    ``every_seconds`` have passed since the last one; at the end of training (``end``), one for
    the final position unless it has one. The summaries are flushed first, so every event up to
    a checkpoint's step is on disk (``tfnet.training.events`` prunes later ones on resume).

    Args:
      state: the run's ``RunState`` (``save``, ``global_step``).
      outputs: the run's ``RunOutputs`` (``flush``).
      every_steps, every_seconds: the schedule; 0 turns either off.
    """

    def __init__(self, state, outputs, every_steps, every_seconds):
        self.state, self.outputs = state, outputs
        self.every_steps, self.every_seconds = every_steps, every_seconds
        self.last_saved = None
        self._last_time = time.perf_counter()

    def begin(self):
        self.last_saved = int(self.state.global_step.numpy())
        self._last_time = time.perf_counter()

    def __call__(self, output):
        if self.due(output.end):
            self.save(output.end)

    def due(self, position):
        if self.every_steps and position // self.every_steps > self.last_saved // self.every_steps:
            return True
        return bool(self.every_seconds) and time.perf_counter() - self._last_time >= self.every_seconds

    def save(self, position):
        """Flushes the summaries, writes a checkpoint of the position; returns its path."""
        self.outputs.flush()
        path = self.state.save()
        self.last_saved = position
        self._last_time = time.perf_counter()
        return path

    def end(self):
        position = int(self.state.global_step.numpy())
        if position != self.last_saved:
            self.save(position)
