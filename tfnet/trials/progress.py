"""What follows an experiment of ``runner.run`` in the driver: each trial's attempts and
outcome (``Progress``), and the stop of the whole experiment when it is interrupted (``Stop``).

Tune sees tasks (``worker.run_task``); every report of a task names the trial it is about. An
attempt of a trial begins at its first report after its task started, or restarted after its
worker or node died, or went on to it from the task's previous trial (that report names its node
and its first epoch). A trial ends with the report of its outcome (ok, diverged or failed), or
with its task: stopped by the scheduler (no outcome reported), or in error (Ray lost the task
more than ``MAX_RESTARTS`` times) for each of the task's trials without an outcome. Once the
experiment is interrupted — SIGINT or SIGTERM, or the caller's ``on_outcome`` raising — Tune
stops the tasks still running (``Stop.stop_all``), and their unfinished trials have no outcome:
they are unfinished, not stopped by a scheduler.
"""

import math

from ray import tune

from tfnet.trials import worker
from tfnet.trials.runner import MAX_RESTARTS, Outcome


class Stop(tune.Stopper):
    """Stops every trial once ``interruption`` is set (to what interrupted the experiment)."""

    def __init__(self):
        self.interruption = None

    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        return self.interruption is not None


class Progress(tune.Callback):
    """Collects ``outcomes`` (trial name -> ``Outcome``) of the tasks' trials and calls
    ``on_outcome`` as each arrives; an exception it raises interrupts the experiment
    (``stop``)."""

    def __init__(self, stop, on_outcome=None):
        self.stop = stop
        self.on_outcome = on_outcome
        self.outcomes = {}
        self._attempts = {}  # trial name -> [attempt dicts]
        self._last = {}  # trial name -> its last report
        self._training = {}  # Tune trial id -> the trial its attempt last reported on

    def __getstate__(self):
        # Tune pickles its callbacks with the experiment (for Tuner.restore, unused here); the
        # caller's on_outcome may hold what cannot be pickled (a script's absl flags).
        return {**self.__dict__, "on_outcome": None, "stop": None}

    def on_trial_start(self, iteration, trials, trial, **info):
        self._training.pop(trial.trial_id, None)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._training.pop(trial.trial_id, None)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        name = result["trial"]
        if self._training.get(trial.trial_id) != name:
            self._training[trial.trial_id] = name
            epochs = result.get("epochs") or [result]
            self._attempts.setdefault(name, []).append(
                dict(node_id=result["node_id"], first_epoch=int(epochs[0]["epoch"])))
        self._last[name] = result
        if "outcome" in result:
            self._finish(name, result["outcome"], result["error"])

    def on_trial_complete(self, iteration, trials, trial, **info):
        for name in self._unfinished(trial):
            self._finish(name, "stopped", "")

    def on_trial_error(self, iteration, trials, trial, **info):
        error = trial.get_pickled_error() or trial.get_error() or "unknown error"
        lines = str(error).strip().splitlines() or ["unknown error"]
        for name in self._unfinished(trial):
            self._finish(name, "failed",
                         f"Ray lost its task {MAX_RESTARTS + 1} times: {lines[-1]}")

    def _unfinished(self, trial):
        return [name for name, _ in trial.config["trials"] if name not in self.outcomes]

    def _finish(self, name, status, error):
        if self.stop.interruption is not None:
            return  # a trial stopped with the experiment: unfinished
        result = self._last.get(name, {})
        last = {key: result.get(key, math.nan) for key in worker.EPOCH_KEYS}
        last["epoch"] = int(result.get("epoch", 0))
        outcome = Outcome(name, status, error, last, tuple(self._attempts.get(name, ())))
        self.outcomes[name] = outcome
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except BaseException as error:  # noqa: BLE001 - re-raised by runner.run once stopped
                self.stop.interruption = error
