"""Running the study's trials: in this process or in worker processes, resumably.

Each trial is one ``tfnet.training.train`` run in its own directory,
``<output_dir>/runs/<problem>/<optimizer>/lr<α>-seed<s>/``. Its record (one row of
``results.csv``) is read back from the run's ``results.json`` — or, for a run whose cost became
non-finite, from the ``diverged.json`` the study writes beside it — so a study run again skips
every finished trial without building anything, and a trial interrupted half-way resumes from
its last checkpoint.

With ``parallel`` > 1 the trials are spread over that many worker processes (spawned, each
importing TensorFlow once), which suits a CPU whose cores a small network's step cannot all use.
"""

import concurrent.futures
import json
import math
import multiprocessing
import os
import time

from tfnet import optimizers
from tfnet.study import problems as problems_lib

DIVERGED_FILE = "diverged.json"
# Each optimiser's counterpart: a Keras twin's is ours, ours' is its twin.
_COUNTERPART = {**optimizers.TWINS, **{twin: ours for ours, twin in optimizers.TWINS.items()}}


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


def run_trial(trial, config):
    """Trains ``trial`` (unless finished: see ``record``) and returns its row."""
    row = record(trial, config)
    if row is not None:
        return row
    from tfnet import training

    train_config = trial.train_config(config)
    try:
        training.train(train_config, verbose=0)
    except training.NonFiniteError as error:
        with open(os.path.join(train_config.run_dir, DIVERGED_FILE), "w") as f:
            json.dump({"message": str(error)}, f)
    return record(trial, config)


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


def _quiet_worker():
    """A worker's set-up: TensorFlow imported without its start-up lines, Python logging at
    WARNING (as the scripts run)."""
    from absl import logging

    from tfnet import flags as tfnet_flags

    tfnet_flags.import_tensorflow_quietly()
    logging.set_verbosity(logging.WARNING)


def _timed_trial(trial, config):
    started = time.perf_counter()
    row = run_trial(trial, config)
    return row, time.perf_counter() - started


def run_all(trials, config, say):
    """Runs ``trials`` (``config.parallel`` at a time), saying each result; returns their rows
    in the order of ``trials``. Finished trials are read back, not run."""
    rows = [record(trial, config) for trial in trials]
    todo = [index for index, row in enumerate(rows) if row is None]
    if len(todo) < len(trials):
        say(f"{len(trials) - len(todo)} of {len(trials)} trials already finished")

    def report(index, seconds):
        row, trial = rows[index], trials[index]
        outcome = ("diverged" if row["diverged"] else
                   f"dev {row['dev_accuracy']:.4f} train {row['train_accuracy']:.4f}"
                   + (f" test {row['test_accuracy']:.4f}" if row["test_accuracy"] is not None else ""))
        finished = sum(r is not None for r in rows)
        say(f"[{finished}/{len(trials)}] {trial.name}: {outcome} ({seconds:.1f} s)")

    if config.parallel == 1 or len(todo) <= 1:
        for index in todo:
            rows[index], seconds = _timed_trial(trials[index], config)
            report(index, seconds)
        return rows
    context = multiprocessing.get_context("spawn")  # a fresh TensorFlow in each worker
    with concurrent.futures.ProcessPoolExecutor(min(config.parallel, len(todo)),
                                                mp_context=context,
                                                initializer=_quiet_worker) as pool:
        futures = {pool.submit(_timed_trial, trials[index], config): index for index in todo}
        for future in concurrent.futures.as_completed(futures):
            index = futures[future]
            rows[index], seconds = future.result()
            report(index, seconds)
    return rows
