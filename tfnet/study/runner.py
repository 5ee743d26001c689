"""Running the study's trials on Ray Tune (``tfnet.trials``), resumably.

Each trial is one ``tfnet.training.train`` run in its own directory,
``<output_dir>/runs/<problem>/<optimizer>/lr<α>-seed<s>/``. Its record (one row of
``results.csv``) is read back from the run's ``results.json`` — or, for a run whose cost became
non-finite, from the ``diverged.json`` the study writes beside it — so a study run again skips
every finished trial without building anything, and a trial interrupted half-way resumes from
its last checkpoint. A trial that fails otherwise (its data refused, say) stops the study once the
other trials have ended, naming it (``TrialsFailedError``).
"""

import json
import math
import os

from tfnet import optimizers
from tfnet import trials as trials_lib
from tfnet.study import problems as problems_lib

DIVERGED_FILE = "diverged.json"
# Each optimiser's counterpart: a Keras twin's is ours, ours' is its twin.
_COUNTERPART = {**optimizers.TWINS, **{twin: ours for ours, twin in optimizers.TWINS.items()}}


class TrialsFailedError(RuntimeError):
    """Trials of the study failed for another reason than a diverged cost."""


def record(trial, config):
    """The finished trial's row, or None when it has not finished (as it is wanted)."""
    run_dir = trial.train_config(config).run_dir
    diverged = _read_json(os.path.join(run_dir, DIVERGED_FILE))
    if diverged is not None:
        return _row(trial, config, None, diverged["message"])
    results = _read_json(os.path.join(run_dir, "results.json"))
    # A tuning trial whose run was later finished again with its test evaluation (as seed 0 of
    # the chosen α) is finished; its row leaves the test figures out, as tuning never reads them.
    if results is None or (trial.evaluate_test and not results["finished_with"]["evaluate_test"]):
        return None
    return _row(trial, config, results, None)


def _row(trial, config, results, diverged):
    problem = problems_lib.get(trial.problem)
    row = dict(problem=trial.problem, optimizer=trial.optimizer,
               counterpart=_COUNTERPART.get(trial.optimizer, ""),
               learning_rate=trial.learning_rate, seed=trial.seed,
               phase="seeds" if trial.evaluate_test else "tuning", diverged=diverged is not None,
               train_loss=None, train_accuracy=None, dev_loss=None, dev_accuracy=None,
               test_loss=None, test_accuracy=None, steps=None, seconds=None,
               steps_to_target=None, seconds_to_target=None, target=problem.target)
    if results is None:
        return row
    history = results["history"]
    last = history[-1]
    row.update(train_loss=last["train_loss"], train_accuracy=last["train_accuracy"],
               dev_loss=last["dev_loss"], dev_accuracy=last["dev_accuracy"],
               test_loss=results["test_loss"] if trial.evaluate_test else None,
               test_accuracy=results["test_accuracy"] if trial.evaluate_test else None,
               steps=last["step"], seconds=sum(r["seconds"] for r in history))
    if not all(math.isfinite(row[k]) for k in ("train_loss", "dev_loss")):
        row["diverged"] = True
    elapsed = 0.0
    for epoch in history:  # the first evaluated epoch at the target
        elapsed += epoch["seconds"]
        if epoch["dev_accuracy"] >= problem.target:
            row.update(steps_to_target=epoch["step"], seconds_to_target=elapsed)
            break
    return row


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def run_all(trials, config, cluster, say, then=None):
    """Runs ``trials`` on Ray (``cluster``: a ``tfnet.trials.ClusterConfig``), saying each
    result, and the trials ``then(rows)`` asks for as rows arrive, in the same Ray Tune
    experiment; returns ``{trial: row}`` of them all. Finished trials are read back, not run.

    ``then(rows)`` gets every row so far (``{trial: row}``) each time one arrives and returns the
    trials it now wants (it is asked again later, so it returns each trial once).

    Raises:
      TrialsFailedError: some trials failed (not diverged), each named with its reason, once
        every other trial has ended.
    """
    rows = {}
    failures = []
    by_name = {}

    def grow(trials):
        """The trials of ``trials`` to train; rows of the finished ones read back first."""
        todo = []
        for trial in trials:
            row = record(trial, config)
            if row is None:
                todo.append(trial)
            else:
                rows[trial] = row
        if then is not None and len(todo) < len(trials):  # rows arrived: more may follow
            todo += grow(then(rows))
        return todo

    def tune_trial(trial):
        name = f"{'seeds' if trial.evaluate_test else 'tuning'}:{trial.name}"
        by_name[name] = trial
        return trials_lib.Trial(name, trial.train_config(config))

    todo = grow(trials)
    if len(todo) < len(trials):
        say(f"{len(trials) - len(todo)} of {len(trials)} trials already finished")

    def finished(outcome):
        trial = by_name[outcome.name]
        if outcome.status == "failed":
            failures.append(f"{trial.name}: {outcome.error}")
            say(f"[{len(rows)}] {trial.name}: FAILED: {outcome.error}")
            return []
        if outcome.status == "diverged":
            with open(os.path.join(trial.train_config(config).run_dir, DIVERGED_FILE), "w") as f:
                json.dump({"message": outcome.error}, f)
        rows[trial] = row = record(trial, config)
        said = ("diverged" if row["diverged"] else
                f"dev {row['dev_accuracy']:.4f} train {row['train_accuracy']:.4f}"
                + (f" test {row['test_accuracy']:.4f}" if row["test_accuracy"] is not None else "")
                + f" ({row['seconds']:.1f} s)")
        say(f"[{len(rows)}] {trial.name}: {said}")
        return [tune_trial(more) for more in grow(then(rows))] if then is not None else []

    trials_lib.run([tune_trial(trial) for trial in todo],
                   os.path.join(config.output_dir, "tune"), cluster, on_outcome=finished)
    if failures:
        raise TrialsFailedError(f"{len(failures)} trials failed: " + "; ".join(failures))
    return rows
