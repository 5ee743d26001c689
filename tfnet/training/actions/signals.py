"""SIGINT and SIGTERM noted, not acted on at once: training stops at the next loop boundary.

A compiled loop call lasts about a second at most, so the run answers within a second or two:
``StopOnSignal`` finishes the call, writes a checkpoint and raises ``TrainingInterrupted``.
"""

import signal
import threading

from tfnet import errors


class TrainingInterrupted(errors.TfnetError):
    """SIGINT or SIGTERM stopped the run after a checkpoint; ``signal_number`` says which, and
    the exit status is 128 + that number, as a shell reports a process the signal ended."""

    label = "interrupted"

    def __init__(self, message, signal_number):
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number


class StopSignals:
    """While entered, SIGINT and SIGTERM set ``received`` (the signal's number) instead of
    interrupting; the previous handlers come back on exit. Outside the main thread, where
    Python cannot install handlers, it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received = None
        self._previous = {}

    def _note(self, signal_number, frame):
        del frame
        self.received = signal_number

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._note) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc_info):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}
        return False

    @property
    def name(self):
        return signal.Signals(self.received).name if self.received else None


class StopOnSignal(StopSignals):
    """The action: after a call during which a signal arrived, a checkpoint (``checkpoints``,
    the ``Checkpoints`` action), then ``TrainingInterrupted`` naming the step and the command
    that resumes."""

    def __init__(self, checkpoints, steps_per_epoch, run_dir):
        super().__init__()
        self.checkpoints, self.steps_per_epoch, self.run_dir = checkpoints, steps_per_epoch, run_dir

    def __call__(self, output):
        if not self.received:
            return
        path = self.checkpoints.save(output.end)
        position = output.end
        epoch, batch = divmod(position, self.steps_per_epoch)
        if batch == 0 and position:
            epoch, batch = epoch - 1, self.steps_per_epoch
        raise TrainingInterrupted(
            f"{self.name}: stopped after step {position} (epoch {epoch + 1}, mini-batch "
            f"{batch}); checkpoint {path}. Resume with: python scripts/train.py "
            f"--flagfile={self.run_dir}/flags.txt",
            self.received,
        )
