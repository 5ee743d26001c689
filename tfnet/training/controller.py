"""Between compiled loop calls: evaluation, summaries, checkpoints, signals, early stopping.

The ``Controller`` drives a ``TrainLoop`` from the run's position to ``epochs · ⌈m/b⌉`` steps.
Each call runs up to the next *event* — the end of an evaluated epoch, a checkpoint due by step
count, the end of training — and at most ``steps_per_loop`` steps (0: as many as last about
``SECONDS_PER_CALL``, so that SIGINT / SIGTERM are answered within a second or two). After each
call, in this order (what runs on the host, and when):

1. the call's non-finite steps: ``on_nonfinite="stop"`` raises ``NonFiniteError`` (the last good
   checkpoint is left as it is), ``"skip_step"`` says which updates were dropped;
2. the logged mini-batch costs go to TensorBoard (``batch_cost``);
3. at the end of an evaluated epoch (every ``eval_every_epochs``-th, and the last): the training
   and dev splits are evaluated in inference mode, one compiled call each, logged and recorded
   in the history; the weights go to ``best/`` when the dev accuracy beats the best by more than
   ``early_stopping_min_delta``, else the epochs since the last evaluation count as epochs
   without improvement;
4. a signal received: a checkpoint, then ``TrainingInterrupted``;
5. a checkpoint when one is due: every ``checkpoint_every_steps`` steps, or when
   ``checkpoint_every_seconds`` have passed since the last one.

Training ends after the last epoch, or before an epoch when early stopping's patience is used
up (decided from the checkpointed count, so a rerun of a run that stopped trains nothing), and
a final checkpoint is written. A checkpoint is never written at the end of an evaluated epoch
before that epoch's evaluation, so a resumed run never skips one.
"""

import time

import keras

from tfnet.training.signals import StopSignals, TrainingInterrupted

# A call of the loop should last about this long at most (once its speed is known).
SECONDS_PER_CALL = 1.0
# Steps of the first call, whose time includes tracing and compiling.
FIRST_CALL_STEPS = 16


class NonFiniteError(Exception):
    """A non-finite cost or gradient stopped the run (``on_nonfinite="stop"``)."""


class Controller:
    """Runs a ``TrainLoop`` to the end of training, doing the host's work between calls.

    Args:
      config: the run's ``TrainConfig`` (epochs, eval_every_epochs, steps_per_loop,
        checkpoint_every_steps / _seconds, on_nonfinite, early stopping, run_dir).
      state: the run's ``checkpointing.RunState``.
      loop: the ``TrainLoop``, whose position is ``state.global_step``.
      evaluate: ``evaluate(split_name) -> (loss, accuracy)`` for "train" and "dev".
      outputs: the run's ``outputs.RunOutputs``.
      model, optimizer: for the histograms and the learning rate.
      verbose: 0 silent, 1 a progress bar and a line per evaluated epoch, 2 the lines only.
      actions: the user's callables, each called as ``action(metrics)`` after every evaluation
        (and after the checkpoint due at that step, if any), ``metrics`` the evaluated epoch's
        history record with ``run_dir``.
    """

    def __init__(self, config, state, loop, evaluate, outputs, model, optimizer, verbose,
                 actions=()):
        self.config = config
        self.actions = tuple(actions)
        self.state = state
        self.loop = loop
        self.evaluate = evaluate
        self.outputs = outputs
        self.model = model
        self.optimizer = optimizer
        self.verbose = verbose
        self.steps_per_epoch = loop.steps_per_epoch
        self.total_steps = config.epochs * loop.steps_per_epoch
        self._seconds_per_step = None
        self._last_steps = FIRST_CALL_STEPS
        self._timed_calls = 0
        self._progress = None
        # Steady-state speed: steps and seconds of every call but the first (which compiles).
        self.timed_steps, self.timed_seconds = 0, 0.0
        self._last_saved = None  # the step of the last checkpoint (set when training starts)
        self._last_save_time = self._last_evaluation_time = time.perf_counter()

    # -- Positions -----------------------------------------------------------------------------

    @property
    def position(self):
        return int(self.state.global_step.numpy())

    def _evaluated_epoch(self, epoch):
        return epoch % self.config.eval_every_epochs == 0 or epoch == self.config.epochs

    def _next_evaluation_step(self, position):
        epoch = position // self.steps_per_epoch + 1  # the epoch in progress, 1-based
        every = self.config.eval_every_epochs
        evaluated = min(-(-epoch // every) * every, self.config.epochs)
        return evaluated * self.steps_per_epoch

    def _steps_for_next_call(self, position):
        events = [self.total_steps, self._next_evaluation_step(position)]
        every = self.config.checkpoint_every_steps
        if every:
            events.append((position // every + 1) * every)
        steps = min(min(events) - position, self.loop.max_steps_per_call)
        if self.config.steps_per_loop:
            return max(1, min(steps, self.config.steps_per_loop))
        if self._seconds_per_step is None:
            bound = FIRST_CALL_STEPS
        else:  # grow at most 8× a call, so one slow call cannot be followed by a huge one
            bound = min(8 * self._last_steps, int(SECONDS_PER_CALL / self._seconds_per_step))
        return max(1, min(steps, bound))

    def finished(self):
        """Whether nothing is left to train: every epoch done, or early stopping's patience used."""
        return self.position >= self.total_steps or self._patience_exhausted()

    def _patience_exhausted(self):
        patience = self.config.early_stopping_patience
        return bool(patience) and int(self.state.epochs_without_improvement.numpy()) >= patience

    # -- The run -------------------------------------------------------------------------------

    def train(self):
        """Trains from the state's position to the end; returns True when early stopping ended
        the run."""
        state = self.state
        self._last_saved = self.position
        self._last_save_time = self._last_evaluation_time = time.perf_counter()
        self._catch_up_evaluation()
        with StopSignals() as signals:
            while self.position < self.total_steps and not self._patience_exhausted():
                self._run_once()
                position = self.position
                evaluated = position % self.steps_per_epoch == 0 and self._evaluated_epoch(
                    position // self.steps_per_epoch)
                if evaluated:
                    self._evaluate_epoch(position // self.steps_per_epoch)
                if signals.received:
                    self._interrupt(signals)
                if self._checkpoint_due(position):
                    self.save()
                if evaluated:
                    for action in self.actions:
                        action(dict(state.history[-1], run_dir=self.config.run_dir))
            stopped_early = self._patience_exhausted()
            if stopped_early:
                self._say(f"early stopping: no dev improvement for "
                          f"{int(state.epochs_without_improvement.numpy())} epochs; restoring "
                          f"the best weights (dev accuracy {float(state.best_dev_accuracy.numpy()):.4f})")
            if self.position != self._last_saved:
                self.save()
        return stopped_early

    def _run_once(self):
        position = self.position
        steps = self._steps_for_next_call(position)
        started = time.perf_counter()
        output = self.loop(steps)
        seconds = time.perf_counter() - started
        if output.steps:
            if self._timed_calls:  # the first call traces and compiles: not a speed
                self._seconds_per_step = seconds / output.steps
                self.timed_steps += output.steps
                self.timed_seconds += seconds
            self._timed_calls += 1
            self._last_steps = output.steps
        self._handle_nonfinite(output)
        self.outputs.log_batch_costs(output.logged)
        self._show_progress(position, output)

    def _handle_nonfinite(self, output):
        if output.stopped and self.config.on_nonfinite == "stop":
            step = output.first_nonfinite_step
            epoch, batch = divmod(step - 1, self.steps_per_epoch)
            self.outputs.flush()
            raise NonFiniteError(
                f"non-finite cost or gradient (cost={output.nonfinite_cost}) at step {step} "
                f"(epoch {epoch + 1}, mini-batch {batch + 1}); the update was not applied. "
                f"Last good checkpoint, left intact: {self.state.latest or 'none yet'}. Lower "
                "--learning_rate, or pass --on_nonfinite=skip_step to drop such updates."
            )
        if output.skipped:
            more = f" ({output.skipped - 1} more in this call)" if output.skipped > 1 else ""
            self._say(f"step {output.first_nonfinite_step}: non-finite cost or gradient "
                      f"(cost={output.nonfinite_cost}), update skipped{more}")

    def _catch_up_evaluation(self):
        """A run resumed at the end of an epoch that is now evaluated but was not (its
        ``eval_every_epochs`` changed) evaluates it first."""
        position, history = self.position, self.state.history
        epoch = position // self.steps_per_epoch
        if (position and position % self.steps_per_epoch == 0 and self._evaluated_epoch(epoch)
                and (not history or history[-1]["epoch"] < epoch)):
            self._evaluate_epoch(epoch)

    def _evaluate_epoch(self, epoch):
        config, state = self.config, self.state
        train_loss, train_accuracy = self.evaluate("train")
        dev_loss, dev_accuracy = self.evaluate("dev")
        now = time.perf_counter()
        previous = state.history[-1]["epoch"] if state.history else 0
        record = dict(
            epoch=epoch, step=self.position, train_loss=train_loss, train_accuracy=train_accuracy,
            dev_loss=dev_loss, dev_accuracy=dev_accuracy,
            learning_rate=float(keras.ops.convert_to_numpy(self.optimizer.learning_rate)),
            seconds=now - self._last_evaluation_time,
        )
        self._last_evaluation_time = now
        state.append_history(record)
        self.outputs.log_epoch(record, self.model)
        self._finish_progress()
        self._say(
            f"epoch {epoch}/{config.epochs}: train loss {train_loss:.4f} acc {train_accuracy:.4f} "
            f"| dev loss {dev_loss:.4f} acc {dev_accuracy:.4f} | lr {record['learning_rate']:.3g} "
            f"| {record['seconds']:.1f}s"
        )
        if dev_accuracy > float(state.best_dev_accuracy.numpy()) + config.early_stopping_min_delta:
            state.best_dev_accuracy.assign(dev_accuracy)
            state.epochs_without_improvement.assign(0)
            # Always, not only with early stopping on: a run resumed with a patience has them.
            state.best.save(checkpoint_number=record["step"])
        else:
            state.epochs_without_improvement.assign_add(epoch - previous)

    # -- Checkpoints and signals ---------------------------------------------------------------

    def _checkpoint_due(self, position):
        every_steps = self.config.checkpoint_every_steps
        if every_steps and position // every_steps > self._last_saved // every_steps:
            return True
        every_seconds = self.config.checkpoint_every_seconds
        return bool(every_seconds) and time.perf_counter() - self._last_save_time >= every_seconds

    def save(self):
        """Flushes the summaries (so that every event up to this step is on disk), then writes a
        checkpoint; returns its path."""
        self.outputs.flush()
        path = self.state.save()
        self._last_saved = self.position
        self._last_save_time = time.perf_counter()
        return path

    def _interrupt(self, signals):
        path = self.save()
        position = self.position
        epoch, batch = divmod(position, self.steps_per_epoch)
        if batch == 0 and position:
            epoch, batch = epoch - 1, self.steps_per_epoch
        raise TrainingInterrupted(
            f"{signals.name}: stopped after step {position} (epoch {epoch + 1}, mini-batch "
            f"{batch}); checkpoint {path}. Resume with: python scripts/train.py "
            f"--flagfile={self.config.run_dir}/flags.txt",
            signals.received,
        )

    # -- Output --------------------------------------------------------------------------------

    def _say(self, text):
        if self.verbose:
            print(text, flush=True)

    def _show_progress(self, begin, output):
        """A Keras progress bar from the last evaluation (or the start) to the next one."""
        if self.verbose != 1:
            return
        if self._progress is None:
            self._progress_start = begin
            self._progress = keras.utils.Progbar(self._next_evaluation_step(begin) - begin)
        values = [("cost", output.logged[-1][1])] if output.logged else None
        self._progress.update(self.position - self._progress_start, values=values)

    def _finish_progress(self):
        self._progress = None
