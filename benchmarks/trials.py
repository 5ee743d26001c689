"""Trials on Ray Tune (``tfnet.trials``) against the process pool tfnet ran them in before.

Two workloads, each run whole by each contender in a fresh directory, with every CPU of this
machine (as many pool workers, or concurrent Ray trials, as CPUs):

- **search**: one round of ``search_trials`` random trials from ``examples/search_space.json``
  (moons, ``search_epochs`` epochs, the training flags' other defaults), as ``scripts/tune.py``;
- **study**: the optimiser study (``scripts/study_optimizers.py``; default: 3 problems ×
  8 optimisers × (7 learning rates + 5 seeds), 288 trials), its report and plots included;
- **cluster**: ``cluster_trials`` trials of the search on a Ray cluster on localhost
  (``benchmarks/ray_cluster.py``, ``ray start``, 1 CPU per node), run on its head alone and on
  the head and a second node (started before the timed search, killed after it); goal: the two
  nodes' wall time at most 0.6× the one node's (a speed-up ≥ 1/0.6);
- **asha**: ``asha_trials`` trials of a search whose learning rate reaches diverging values
  (``ASHA_SPACE``), run to their end and with ``--scheduler=asha``: the trial-epochs ASHA spends
  against the full search's (goal ≤ 0.5) and the best dev accuracy of each, the full search's
  best trial rerun over ``asha_seeds`` seeds for the seed spread (goal: ASHA's best within it).

Contenders:

- **process pool** (the anchor; what tfnet did until it moved to Ray, kept here to be timed): the
  search ran each trial as a ``python scripts/train.py`` process of its own (its flags in a
  flagfile), polled every 0.1 s; the study ran each phase's trials in a
  ``concurrent.futures.ProcessPoolExecutor`` of spawned workers, each importing TensorFlow once;
- **Ray**: ``tuning.run_search`` and ``study.run`` as the scripts call them, Ray started on this
  machine for each run and stopped after it (its start-up is in the time).

The unit is a trial (a run's wall time / its trials); the goal: Ray at most 10 % slower than
the pool (a speed-up ≥ 1/1.1). Rounds alternate the order; each is minutes long.
"""

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks import harness
from tfnet.config import names_among, non_negative_int, positive_int, setting

GOAL = 1 / 1.1
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEARCH_SPACE = os.path.join(REPO_ROOT, "examples", "search_space.json")
# --quick: one trial of one epoch each way, the study left out (seconds, not minutes).
QUICK = dict(rounds=1, workloads=("search", "asha"), search_trials=1, search_epochs=1,
             asha_trials=3, asha_epochs=3, asha_seeds=1)
# How often the pool looked at its trial processes.
POLL_SECONDS = 0.1


@dataclasses.dataclass(frozen=True)
class TrialsBenchConfig:
    """What to time; each field is a flag of ``scripts/bench_trials.py``."""

    workloads: tuple = setting(("search", "study", "cluster", "asha"), "Workloads: search (one "
                               "round of --search_trials trials), study (the optimiser study), "
                               "cluster (one node against two) and asha (ASHA against the full "
                               "search).",
                               names_among("search", "study", "cluster", "asha"))
    search_trials: int = setting(20, "Trials of the search.", positive_int)
    search_epochs: int = setting(20, "Epochs of each search trial.", positive_int)
    study_problems: tuple = setting(("moons", "circles", "flower"), "The study's problems.",
                                    names_among("moons", "circles", "flower"))
    study_optimizers: tuple = setting((), "The study's optimisers (empty: all eight).")
    study_lr_points: int = setting(7, "The study's learning rates per optimiser.", positive_int)
    study_seeds: int = setting(5, "The study's seeds per chosen learning rate.", positive_int)
    study_epochs: int = setting(0, "Epochs of every study trial; 0: each problem's own.",
                                non_negative_int)
    cluster_trials: int = setting(16, "Trials of the search on the localhost cluster.",
                                  positive_int)
    asha_trials: int = setting(27, "Trials of the search with and without ASHA.", positive_int)
    asha_epochs: int = setting(27, "Epochs of each trial of the ASHA workload (ASHA's rungs are "
                               "1, 3, 9, ... epochs).", positive_int)
    asha_seeds: int = setting(5, "Seeds the full search's best trial is rerun over, for the "
                              "seed spread of its dev accuracy.", positive_int)
    rounds: int = setting(2, "Timed rounds (each runs each workload once per contender).",
                          positive_int)


def _workers():
    return os.cpu_count() or 1


# -- The search ------------------------------------------------------------------------------

def _search_setup(config):
    from tfnet import search_space as search_space_lib
    from tfnet.config import TrainConfig

    space = search_space_lib.SearchSpace.from_file(SEARCH_SPACE)
    return space, TrainConfig(epochs=config.search_epochs)


def search_with_pool(config, directory):
    """The search's trials, each a ``python scripts/train.py`` process, ``_workers()`` at once."""
    import numpy as np

    from tfnet import tuning

    space, base = _search_setup(config)
    rng = np.random.default_rng([0, 0])  # the search's round 0, as tuning samples it
    queue = [tuning.trial_config(values, base, os.path.join(directory, f"trial{i:03d}"))
             for i, values in enumerate(space.sample(rng, config.search_trials))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))
    running = []
    while queue or running:
        while queue and len(running) < _workers():
            trial = queue.pop(0)
            os.makedirs(trial.model_dir)
            flagfile = os.path.join(trial.model_dir, "trial.flags")
            with open(flagfile, "w") as f:
                f.write(trial.to_flags())
            running.append(subprocess.Popen(
                [sys.executable, os.path.join(REPO_ROOT, "scripts", "train.py"),
                 f"--flagfile={flagfile}"], env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True))
        done = [process for process in running if process.poll() is not None]
        if not done:
            time.sleep(POLL_SECONDS)
        for process in done:
            running.remove(process)
    return config.search_trials


def search_on_ray(config, directory):
    """The same search through ``tuning.run_search`` (one round), Ray started for it."""
    from tfnet import tuning

    space, base = _search_setup(config)
    search = tuning.SearchConfig(directory, base_config=base, rounds=1,
                                 trials_per_round=config.search_trials, seed=0)
    return len(tuning.run_search(space, search))


# -- The study -------------------------------------------------------------------------------

def _study_config(config, directory):
    from tfnet import optimizers, study

    return study.StudyConfig(problems=config.study_problems,
                             optimizers=config.study_optimizers or optimizers.NAMES,
                             lr_points=config.study_lr_points, seeds=config.study_seeds,
                             epochs=config.study_epochs, output_dir=directory)


def _quiet_worker():
    """A pool worker's set-up: TensorFlow imported without its start-up lines."""
    from absl import logging

    from tfnet import flags as tfnet_flags

    tfnet_flags.import_tensorflow_quietly()
    logging.set_verbosity(logging.WARNING)


def _train_in_pool(trial, study_config):
    """One study trial in a pool worker, as the pool ran it (a diverged run's message kept)."""
    from tfnet import training
    from tfnet.study import runner

    train_config = trial.train_config(study_config)
    try:
        training.train(train_config, verbose=0)
    except training.NonFiniteError as error:
        with open(os.path.join(train_config.run_dir, runner.DIVERGED_FILE), "w") as f:
            json.dump({"message": str(error)}, f)


def _pool_rows(trials, study_config):
    from tfnet.study import runner

    context = multiprocessing.get_context("spawn")  # a fresh TensorFlow in each worker
    with concurrent.futures.ProcessPoolExecutor(min(_workers(), len(trials)), mp_context=context,
                                                initializer=_quiet_worker) as pool:
        for future in [pool.submit(_train_in_pool, trial, study_config) for trial in trials]:
            future.result()
    return [runner.record(trial, study_config) for trial in trials]


def study_with_pool(config, directory):
    """The study with each phase's trials in a pool of spawned workers, then its report."""
    from tfnet.study import protocol, report

    study_config = _study_config(config, directory)
    tuning = protocol.tuning_trials(study_config)
    tuning_rows = _pool_rows(tuning, study_config)
    chosen, unchosen = protocol.choose_all(study_config, tuning_rows)
    seeds = protocol.seed_trials(study_config, chosen)
    report.write(study_config, tuning_rows + _pool_rows(seeds, study_config), chosen, unchosen)
    return len(tuning) + len(seeds)


def study_on_ray(config, directory):
    """``study.run`` as the script calls it, Ray started for it."""
    import csv

    from tfnet import study

    _, paths = study.run(_study_config(config, directory), say=lambda line: None)
    with open(paths["results.csv"]) as f:
        return len(list(csv.DictReader(f)))


# -- One node against two ---------------------------------------------------------------------

def _cluster_contenders(config, cluster):
    """The search on ``cluster``'s head alone, and on the head and its second node: each a
    ``scripts/tune.py --ray_address=...`` driver, as a user runs it (a driver process of its own:
    one that started an embedded Ray before keeps that Ray's node address)."""

    def contender(name, nodes):
        def run():
            if nodes == 2:
                cluster.start_second()
            directory = tempfile.mkdtemp(prefix="bench-trials-cluster-")
            command = [sys.executable, os.path.join(REPO_ROOT, "scripts", "tune.py"),
                       f"--search_space={SEARCH_SPACE}", f"--search_dir={directory}/search",
                       "--rounds=1", f"--trials_per_round={config.cluster_trials}",
                       f"--epochs={config.search_epochs}", f"--ray_address={cluster.address}"]
            try:
                started = time.perf_counter()
                subprocess.run(command, env=dict(os.environ, **cluster.auth_env), check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                return (time.perf_counter() - started) / config.cluster_trials
            finally:
                shutil.rmtree(directory, ignore_errors=True)
                if nodes == 2:
                    cluster.kill("second")

        return harness.Contender(name, run)

    return [contender("one node", 1), contender("two nodes", 2)]


def _cluster(config, say):
    from benchmarks.ray_cluster import LocalCluster

    root = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths
    cluster = LocalCluster(root)
    try:
        cluster.start_head()
        say(f"cluster: {config.cluster_trials} trials on one node vs two, {config.rounds} "
            "rounds ...")
        timings = harness.measure(_cluster_contenders(config, cluster), config.rounds,
                                  warmup_rounds=0)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    say(f"cluster: seconds per trial, one node {timings['one node']}, two nodes "
        f"{timings['two nodes']}")
    return [harness.result(f"cluster: {config.cluster_trials} trials of {config.search_epochs} "
                           "epochs, localhost nodes of 1 CPU, drivers included", timings,
                           "two nodes", "one node", "trial", 1 / 0.6)]


# -- ASHA against the full search --------------------------------------------------------------

# The search space of the ASHA workload: Adam's learning rate up to 10, where trials diverge or
# stall, so that there are poor trials to stop.
ASHA_SPACE = {"learning_rate": {"scale": "log", "low": 1e-4, "high": 10.0},
              "hidden_units": {"scale": "choice", "values": ["8", "32,16"]}}


def _asha(config, say):
    import numpy as np

    from tfnet import search_space as search_space_lib
    from tfnet import training, tuning
    from tfnet.config import TrainConfig

    space = search_space_lib.SearchSpace.from_dict(ASHA_SPACE)
    base = TrainConfig(epochs=config.asha_epochs)
    with tempfile.TemporaryDirectory(prefix="bench-trials-asha-") as directory:
        records = {}
        for scheduler in ("none", "asha"):
            say(f"asha: {config.asha_trials} trials of {config.asha_epochs} epochs, "
                f"scheduler {scheduler} ...")
            search = tuning.SearchConfig(os.path.join(directory, scheduler), base_config=base,
                                         rounds=1, trials_per_round=config.asha_trials, seed=0,
                                         scheduler=scheduler)
            records[scheduler] = tuning.run_search(space, search)
        # Trial-epochs of the trials that ran (a diverged trial stops at its first non-finite
        # cost, with or without ASHA, and is left out of both).
        epochs = {name: sum(r["epochs"] for r in rs if r["status"] != "failed")
                  for name, rs in records.items()}
        best = {name: max(r["dev_accuracy"] for r in rs if r["status"] == "ok")
                for name, rs in records.items()}
        best_values = next(r for r in records["none"] if r["status"] == "ok")["values"]
        spread = []
        for seed in range(config.asha_seeds):
            run = tuning.trial_config(best_values, dataclasses.replace(base, seed=seed),
                                      os.path.join(directory, f"seed{seed}"))
            spread.append(training.train(run, verbose=0).dev_accuracy)
    low = float(np.min(spread))
    say(f"asha: trial-epochs {epochs}; best dev accuracy {best}; the full search's best over "
        f"{config.asha_seeds} seeds: {sorted(spread)}")
    description = (f"asha: {config.asha_trials} trials of {config.asha_epochs} epochs, "
                   "α up to 10")
    return [
        harness.Figure(description, "trial-epochs, ASHA / full search",
                       epochs["asha"] / epochs["none"], "×", 0.5, True),
        harness.Figure(description, "best dev accuracy, full search", best["none"], ""),
        harness.Figure(description, "best dev accuracy with ASHA, against the full search's "
                       "best trial's lowest over seeds", best["asha"], "", low),
    ]


# -- The benchmark ---------------------------------------------------------------------------

WORKLOADS = {"search": (search_with_pool, search_on_ray),
             "study": (study_with_pool, study_on_ray)}


def _contender(name, workload, config):
    def run():
        directory = tempfile.mkdtemp(prefix=f"bench-trials-{name.replace(' ', '-')}-")
        try:
            started = time.perf_counter()
            count = workload(config, directory)
            return (time.perf_counter() - started) / count
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    return harness.Contender(name, run)


def run(config, say=print):
    """Times each workload with each contender; returns Ray's ``harness.Result`` against the
    pool for each."""
    results = []
    for workload in config.workloads:
        if workload in ("cluster", "asha"):
            results += {"cluster": _cluster, "asha": _asha}[workload](config, say)
            continue
        pool, ray = WORKLOADS[workload]
        say(f"{workload}: process pool vs Ray, {config.rounds} rounds ...")
        timings = harness.measure([_contender("process pool", pool, config),
                                   _contender("Ray", ray, config)], config.rounds,
                                  warmup_rounds=0)
        say(f"{workload}: seconds per trial, pool {timings['process pool']}, Ray {timings['Ray']}")
        size = (f"{config.search_trials} trials of {config.search_epochs} epochs"
                if workload == "search" else "the optimiser study")
        results.append(harness.result(f"{workload}: {size}, {_workers()} at a time", timings,
                                      "Ray", "process pool", "trial", GOAL))
    return results
