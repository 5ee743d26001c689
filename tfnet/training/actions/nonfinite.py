"""The host's answer to the loop's non-finite steps (the loop never applies one)."""

from tfnet import errors


class NonFiniteError(errors.TfnetError):
    """A non-finite cost or gradient stopped the run (``on_nonfinite="stop"``); exit status 3."""

    exit_code = 3


class NonFiniteGuard:
    """After each call: ``on_nonfinite="stop"`` raises ``NonFiniteError`` at a call the loop
    stopped (the last good checkpoint is left as it is), ``"skip_step"`` says which updates were
    dropped.

    Args:
      on_nonfinite: "stop" or "skip_step".
      steps_per_epoch: to name the epoch and mini-batch of the step.
      latest_checkpoint: ``latest_checkpoint() -> path or None``.
      before_raising: called before the error is raised (flushes the summaries).
      say: prints a line.
    """

    def __init__(self, on_nonfinite, steps_per_epoch, latest_checkpoint, before_raising, say):
        self.on_nonfinite, self.steps_per_epoch = on_nonfinite, steps_per_epoch
        self.latest_checkpoint, self.before_raising, self.say = (
            latest_checkpoint, before_raising, say)

    def __call__(self, output):
        if output.stopped and self.on_nonfinite == "stop":
            step = output.first_nonfinite_step
            epoch, batch = divmod(step - 1, self.steps_per_epoch)
            self.before_raising()
            raise NonFiniteError(
                f"non-finite cost or gradient (cost={output.nonfinite_cost}) at step {step} "
                f"(epoch {epoch + 1}, mini-batch {batch + 1}); the update was not applied. "
                f"Last good checkpoint, left intact: {self.latest_checkpoint() or 'none yet'}. "
                "Lower --learning_rate, or pass --on_nonfinite=skip_step to drop such updates."
            )
        if output.skipped:
            more = f" ({output.skipped - 1} more in this call)" if output.skipped > 1 else ""
            self.say(f"step {output.first_nonfinite_step}: non-finite cost or gradient "
                     f"(cost={output.nonfinite_cost}), update skipped{more}")
