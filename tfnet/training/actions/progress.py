"""The run's console: a progress bar between evaluations, and its lines."""

import keras


class Progress:
    """After each call, a Keras progress bar from the last evaluation (or the start) to the next
    one (``verbose`` 1); ``say`` prints a line (``verbose`` 1 or 2), ending the bar first.

    Args:
      verbose: 0 silent, 1 bar and lines, 2 lines only.
      next_evaluation_step: ``next_evaluation_step(position) -> step``.
    """

    def __init__(self, verbose, next_evaluation_step):
        self.verbose, self.next_evaluation_step = verbose, next_evaluation_step
        self._bar, self._bar_start = None, None

    def __call__(self, output):
        if self.verbose != 1:
            return
        if self._bar is None:
            self._bar_start = output.start
            self._bar = keras.utils.Progbar(self.next_evaluation_step(output.start) - output.start)
        values = [("cost", output.logged[-1][1])] if output.logged else None
        self._bar.update(output.end - self._bar_start, values=values)

    def say(self, text):
        self._bar = None
        if self.verbose:
            print(text, flush=True)
