"""Evaluation at the end of evaluated epochs: the history, the epoch summaries, the epoch line."""

import time

import keras


class Evaluation:
    """After a call that ends an evaluated epoch (every ``eval_every_epochs``-th, and the last),
    evaluates the training and dev splits in inference mode, appends the record to the run's
    history (checkpointed), logs it to TensorBoard and prints its line; then ``listeners`` (early
    stopping) see the record. ``record`` is the record of this call's evaluation, or None.

    A run resumed at the end of an epoch that is now evaluated but was not (its
    ``eval_every_epochs`` changed) evaluates it first (``begin``).

    Args:
      evaluate: ``evaluate() -> {"train": (loss, accuracy), "dev": (loss, accuracy)}``.
      state: the run's ``RunState`` (its position and history).
      outputs: the run's ``RunOutputs`` (``log_epoch``).
      model, optimizer: for the histograms and the learning rate.
      epochs, eval_every_epochs, steps_per_epoch: the schedule.
      say: prints a line.
      listeners: ``listener(record)`` after each evaluation.
    """

    def __init__(self, evaluate, state, outputs, model, optimizer, epochs, eval_every_epochs,
                 steps_per_epoch, say, listeners=()):
        self.evaluate, self.state, self.outputs = evaluate, state, outputs
        self.model, self.optimizer = model, optimizer
        self.epochs, self.eval_every_epochs, self.steps_per_epoch = (
            epochs, eval_every_epochs, steps_per_epoch)
        self.say, self.listeners = say, tuple(listeners)
        self.record = None
        self._last_time = time.perf_counter()

    def evaluated_epoch(self, epoch):
        return epoch % self.eval_every_epochs == 0 or epoch == self.epochs

    def next_evaluation_step(self, position):
        """The step at the end of the next evaluated epoch after ``position``."""
        epoch = position // self.steps_per_epoch + 1  # the epoch in progress, 1-based
        every = self.eval_every_epochs
        return min(-(-epoch // every) * every, self.epochs) * self.steps_per_epoch

    def begin(self):
        self._last_time = time.perf_counter()
        position, history = int(self.state.global_step.numpy()), self.state.history
        epoch = position // self.steps_per_epoch
        if (position and position % self.steps_per_epoch == 0 and self.evaluated_epoch(epoch)
                and (not history or history[-1]["epoch"] < epoch)):
            self._evaluate(epoch, position)

    def __call__(self, output):
        self.record = None
        epoch, batch = divmod(output.end, self.steps_per_epoch)
        if output.steps and batch == 0 and self.evaluated_epoch(epoch):
            self._evaluate(epoch, output.end)

    def _evaluate(self, epoch, step):
        figures = self.evaluate()
        (train_loss, train_accuracy), (dev_loss, dev_accuracy) = figures["train"], figures["dev"]
        now = time.perf_counter()
        record = dict(
            epoch=epoch, step=step, train_loss=train_loss, train_accuracy=train_accuracy,
            dev_loss=dev_loss, dev_accuracy=dev_accuracy,
            learning_rate=float(keras.ops.convert_to_numpy(self.optimizer.learning_rate)),
            seconds=now - self._last_time,
        )
        self._last_time = now
        self.state.append_history(record)
        self.outputs.log_epoch(record, self.model)
        self.say(
            f"epoch {epoch}/{self.epochs}: train loss {train_loss:.4f} acc {train_accuracy:.4f} "
            f"| dev loss {dev_loss:.4f} acc {dev_accuracy:.4f} | lr {record['learning_rate']:.3g} "
            f"| {record['seconds']:.1f}s"
        )
        previous = self.state.history[-2]["epoch"] if len(self.state.history) > 1 else 0
        for listener in self.listeners:
            listener(record, epochs_since=epoch - previous)
        self.record = record
