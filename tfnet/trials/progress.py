"""What follows an experiment of ``runner.run`` in the driver: each trial's attempts and
outcome (``Progress``), and the stop of the whole experiment when it is interrupted (``Stop``).

An attempt begins when Tune starts the trial, or restarts it after its worker or node died; it
is counted from its first report (which names its node and its first epoch). A trial ends
complete (its last report says how: ok, diverged or failed; none when the scheduler stopped it)
or in error (Ray lost it more than ``MAX_RESTARTS`` times). Once the experiment is interrupted —
SIGINT or SIGTERM, or the caller's ``on_outcome`` raising — Tune stops the trials still running
(``Stop.stop_all``), and these have no outcome: they are unfinished, not stopped by a scheduler.
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
    """Collects ``outcomes`` (name -> ``Outcome``) and calls ``on_outcome`` as each arrives; an
    exception it raises interrupts the experiment (``stop``)."""

    def __init__(self, stop, on_outcome=None):
        self.stop = stop
        self.on_outcome = on_outcome
        self.outcomes = {}
        self._attempts = {}
        self._starting = set()

    def __getstate__(self):
        # Tune pickles its callbacks with the experiment (for Tuner.restore, unused here); the
        # caller's on_outcome may hold what cannot be pickled (a script's absl flags).
        return {**self.__dict__, "on_outcome": None, "stop": None}

    def on_trial_start(self, iteration, trials, trial, **info):
        self._starting.add(trial.trial_id)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._starting.add(trial.trial_id)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if trial.trial_id in self._starting:
            self._starting.discard(trial.trial_id)
            self._attempts.setdefault(trial.trial_id, []).append(
                dict(node_id=result["node_id"], first_epoch=int(result["epoch"])))

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result
        status = result.get("outcome", "stopped")
        self._finish(trial, status, result.get("error", ""), result)

    def on_trial_error(self, iteration, trials, trial, **info):
        error = trial.get_pickled_error() or trial.get_error() or "unknown error"
        lines = str(error).strip().splitlines() or ["unknown error"]
        self._finish(trial, "failed",
                     f"Ray lost the trial {MAX_RESTARTS + 1} times: {lines[-1]}",
                     trial.last_result)

    def _finish(self, trial, status, error, result):
        if self.stop.interruption is not None:
            return  # a trial stopped with the experiment: unfinished
        last = {key: result.get(key, math.nan) for key in worker.EPOCH_KEYS}
        last["epoch"] = int(result.get("epoch", 0))
        outcome = Outcome(trial.config["trial"], status, error, last,
                          tuple(self._attempts.get(trial.trial_id, ())))
        self.outcomes[outcome.name] = outcome
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except BaseException as error:  # noqa: BLE001 - re-raised by runner.run once stopped
                self.stop.interruption = error
