"""Hyperparameter search: coarse-to-fine rounds of random trials, each a full training run.

docs/methods.md §9. Round 0 samples ``trials_per_round`` trials from the search space with
``numpy.random.default_rng([seed, 0])``; round k+1 samples from ``search_space.narrow`` of round
k's space around its best ``top_fraction`` of successful trials (all of round k's space again if
none succeeded). Each trial runs the training script as its own process (``parallel`` at once:
"caviar"; 1: one after another), with the fixed ``base_flags``, the sampled values as flags of the
same names, ``--model_dir=<search_dir>/<trial>``, ``--noexport`` and ``--noevaluate_test`` (the
test split plays no part in choosing). Two parameter names are not
flags: ``units`` and ``layers`` (``DEPTH_PARAMETERS``) are sampled together and give the trial
``--hidden_units=units,...,units`` (``layers`` times), so that depth is searched with one width
for every hidden layer. A trial fails when the process exits non-zero, writes no
``results.json``, or reports a non-finite loss or metric; the failure is recorded with its
reason and the search goes on.

The search directory holds:

- ``<trial>/``: the trial's run directory (TensorBoard events with ``hp.hparams``, ``flags.txt``,
  ``results.json``) and ``train.log``, its output;
- TensorBoard's ``hp.hparams_config`` (the searched parameters with round 0's domains, dev and
  train accuracy and loss as metrics), so ``tensorboard --logdir <search_dir>`` shows every trial
  on the HParams dashboard;
- ``results.csv`` and ``results.json``: every trial, sorted by the metric, failures last;
- ``best_flags.txt``: the best trial's resolved flags without ``--model_dir``, ``--noexport`` and
  ``--noevaluate_test``,
  which ``scripts/train.py --flagfile=`` reproduces (bit for bit with ``--deterministic``);
- ``search.json``: the settings, each round's space and trials, each finished trial's record,
  and the process id of each trial running now. A restarted search reads it and runs only the
  trials without a record (rounds may be added); finished trials, failed ones included, are not
  re-run; a trial interrupted half-way has no record, so its directory is cleared and it runs
  again;
- ``search.lock``: locked (``tfnet.locks``) while a search runs, so a second search of the same
  directory is refused, naming the process that holds it; the lock goes with its process,
  however that ends.

An interrupted search (Ctrl-C, an exception) kills its running trials. A search killed outright
(SIGKILL, a crash) cannot, and its trials, in sessions of their own, go on running; the next
search of the directory kills each recorded trial still running (on Linux, where ``/proc`` shows
a process running with that trial's ``--model_dir``; a reused process id is left alone) before
it clears the trial's directory.
"""

import csv
import dataclasses
import io
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

from tfnet import config as config_lib
from tfnet import locks
from tfnet import search_space as search_space_lib

# Whether a larger value is better, for each metric of results.json a search can rank by.
METRICS = {"dev_accuracy": True, "best_dev_accuracy": True, "dev_loss": False}

# results.json values copied into the records and the table. Test figures are left out on
# purpose: choosing among trials by the test set would make it a second dev set.
_RESULT_KEYS = ("dev_accuracy", "dev_loss", "best_dev_accuracy", "train_accuracy", "train_loss",
                "epochs")

# TrainConfig's tuple fields (hidden_units, keep_prob) -> their element type: train.py logs them
# to hp.hparams as comma-joined strings ("16,8", "1.0"), whatever type a search samples them as.
_LOGGED_AS_STRING = {field.name: field.metadata["element"]
                     for field in dataclasses.fields(config_lib.TrainConfig)
                     if isinstance(field.default, tuple)}

# Search-space parameters that are not training flags: sampled together, they set hidden_units.
DEPTH_PARAMETERS = ("units", "layers")


def _fail(name, rule, value):
    raise ValueError(f"{name} must be {rule}. Received: {name}={value!r}")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """How to run a search; every field is checked on construction.

    Args:
      search_dir: directory of the search (created; reused to resume).
      train_script: path of the training script, e.g. ``scripts/train.py``.
      base_flags: fixed training flags, name -> value, given to every trial (sampled values
        override them). Must not set ``model_dir`` or ``export``: the search sets those.
      rounds: number of coarse-to-fine rounds, >= 1. Default 2.
      trials_per_round: random trials per round, >= 1. Default 8.
      parallel: trials running at once as separate processes, >= 1. Default 1.
      seed: seed of the sampling. Default 0.
      metric: results.json key ranking the trials, one of ``METRICS``. Default "dev_accuracy".
      top_fraction: fraction of a round's successful trials the next round zooms around, in
        (0, 1]; at least one trial. Default 0.25.
      padding: margin of the narrowed ranges, as a fraction of the current width, >= 0.
        Default 0.1.
      narrow_choices: narrow choice parameters to the values of the best trials. Default True.
      python: interpreter that runs the training script. Default: this one.
      env: environment of the trial processes. Default: this process's.
    """

    search_dir: str
    train_script: str
    base_flags: dict = dataclasses.field(default_factory=dict)
    rounds: int = 2
    trials_per_round: int = 8
    parallel: int = 1
    seed: int = 0
    metric: str = "dev_accuracy"
    top_fraction: float = 0.25
    padding: float = 0.1
    narrow_choices: bool = True
    python: str = sys.executable
    env: dict = None

    def __post_init__(self):
        if not os.path.isfile(self.train_script):
            _fail("train_script", "an existing file", self.train_script)
        for name in ("rounds", "trials_per_round", "parallel"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                _fail(name, "an integer >= 1", value)
        if self.metric not in METRICS:
            _fail("metric", f"one of {', '.join(METRICS)}", self.metric)
        if not 0 < self.top_fraction <= 1:
            _fail("top_fraction", "in (0, 1]", self.top_fraction)
        if not self.padding >= 0:
            _fail("padding", ">= 0", self.padding)
        reserved = sorted({"model_dir", "export"} & set(self.base_flags))
        if reserved:
            _fail("base_flags", "free of model_dir and export (the search sets them)", reserved)

    def settings(self, space):
        """What must match for a search directory to be resumed (``rounds`` may grow)."""
        return dict(space=space.to_dict(), base_flags=self.base_flags,
                    trials_per_round=self.trials_per_round, seed=self.seed, metric=self.metric,
                    top_fraction=self.top_fraction, padding=self.padding,
                    narrow_choices=self.narrow_choices)


def check_space(space, base_flags=None):
    """Raises ValueError unless ``space``'s ``units`` and ``layers``, if any, can be composed.

    They must come together, each an int range or a choice of integers, all >= 1, with no
    ``hidden_units`` in ``space`` or ``base_flags`` (they set it).
    """
    searched = [name for name in DEPTH_PARAMETERS if name in space.names]
    if not searched:
        return
    if len(searched) == 1:
        _fail("search space", "given units and layers together (they compose hidden_units)",
              searched)
    for name in DEPTH_PARAMETERS:
        parameter = space[name]
        if isinstance(parameter, search_space_lib.IntUniform):
            values = [parameter.low]
        elif isinstance(parameter, search_space_lib.Choice):
            values = list(parameter.values)
        else:
            _fail(f"{name}.scale", "int or choice", parameter.scale)
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            _fail(name, "sampled from integers >= 1", parameter.to_dict())
    if "hidden_units" in space.names:
        _fail("search space", "free of hidden_units when it has units and layers (they compose "
              "it)", list(space.names))
    if "hidden_units" in (base_flags or {}):
        _fail("base_flags", "free of hidden_units when the space has units and layers (they "
              "compose it)", {"hidden_units": base_flags["hidden_units"]})


def run_search(space, config, report=None):
    """Runs (or resumes) the search; returns the records sorted best first, failures last.

    Args:
      space: the round-0 ``search_space.SearchSpace``; names are training-script flag names.
      config: a ``SearchConfig``.
      report: optional callable ``report(record, done, total, best)`` after each trial, with the
        number of trials finished, the search's total, and the best record so far (or None).

    Raises:
      ValueError: when ``check_space`` refuses ``space`` and ``config.base_flags``, when
        ``config.search_dir`` holds a search with other settings, or when another search of
        ``config.search_dir`` is running.
    """
    check_space(space, config.base_flags)
    try:
        lock = locks.DirectoryLock.acquire(config.search_dir, "search.lock")
    except locks.LockHeldError as held:
        _fail("search_dir", f"free of another running search ({held.holder} holds search.lock)",
              config.search_dir)
    with lock:
        return _run_locked(space, config, report)


def _run_locked(space, config, report):
    state = _load_or_create(space, config)
    _stop_orphans(state, config)
    total = config.rounds * config.trials_per_round

    def started(trial, pid):
        # The model_dir as the trial's command line spells it, for _stop_orphans to recognise.
        state["running"][trial["trial"]] = dict(pid=pid, model_dir=_model_dir(trial, config))
        _write_state(state, config)

    def stopped(trial):
        state["running"].pop(trial["trial"], None)  # None: interrupted before it was recorded.
        _write_state(state, config)

    def finish(record):
        state["records"][record["trial"]] = record
        state["running"].pop(record["trial"])
        records = _save(state, config)
        best = records[0] if records[0]["status"] == "ok" else None
        if report is not None:
            report(record, len(state["records"]), total, best)

    for round_index in range(config.rounds):
        if round_index == len(state["rounds"]):
            state["rounds"].append(_plan_round(state, config, round_index))
            _save(state, config)
        planned = state["rounds"][round_index]["trials"]
        pending = [trial for trial in planned if trial["trial"] not in state["records"]]
        _run_trials(pending, config, started, stopped, finish)
    return _sorted_records(state, config)


def _load_or_create(space, config):
    path = os.path.join(config.search_dir, "search.json")
    settings = config.settings(space)
    if os.path.exists(path):
        with open(path) as f:
            state = json.load(f)
        differing = sorted(k for k in settings if state["settings"].get(k) != settings[k])
        if differing:
            _fail("search_dir", "a new directory or one holding the same search (it differs in "
                  f"{', '.join(differing)})", config.search_dir)
        state.setdefault("running", {})  # Written before trials' process ids were recorded.
        return state
    write_hparams_config(space, config.search_dir)
    return {"settings": settings, "rounds": [], "records": {}, "running": {}}


def _stop_orphans(state, config):
    """Kills the recorded trials still running, left behind by a search that was killed outright.

    The lock rules out a live search owning them. A trial still running is a process whose
    ``/proc/<pid>/cmdline`` holds its ``--model_dir``; a process id reused by another program (or
    a zombie, whose command line is empty) does not match and is left alone.
    """
    for trial, entry in state["running"].items():
        pid, model_dir = entry["pid"], entry["model_dir"]
        if not _is_trial_process(pid, model_dir):
            continue
        logging.warning("Killing trial %s (pid %d), left running by a search that was killed.",
                        trial, pid)
        try:
            os.killpg(pid, signal.SIGKILL)  # Started with a session of its own: pgid == pid.
        except ProcessLookupError:
            continue  # Ended in the meantime.
        deadline = time.monotonic() + 30
        while _is_trial_process(pid, model_dir):
            if time.monotonic() > deadline:
                raise RuntimeError(f"trial {trial} (pid {pid}) survived SIGKILL for 30 s; stop "
                                   f"it before resuming the search in {config.search_dir}")
            time.sleep(0.05)
    state["running"] = {}
    _write_state(state, config)


def _is_trial_process(pid, model_dir):
    """Whether process ``pid`` runs with ``--model_dir=<model_dir>`` (Linux ``/proc``)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            arguments = f.read().split(b"\0")
    except OSError:  # No such process, or no /proc.
        return False
    return os.fsencode(f"--model_dir={model_dir}") in arguments


def _plan_round(state, config, round_index):
    """Samples round ``round_index`` from round 0's space or the previous round's narrowed one."""
    space = search_space_lib.SearchSpace.from_dict(state["settings"]["space"])
    if round_index > 0:
        previous = state["rounds"][round_index - 1]
        space = search_space_lib.SearchSpace.from_dict(previous["space"])
        ids = {trial["trial"] for trial in previous["trials"]}
        succeeded = [r for r in _sorted_records(state, config)
                     if r["trial"] in ids and r["status"] == "ok"]
        if succeeded:
            top = succeeded[:max(1, math.ceil(config.top_fraction * len(succeeded)))]
            space = search_space_lib.narrow(space, [r["values"] for r in top], config.padding,
                                            config.narrow_choices)
    rng = np.random.default_rng([config.seed, round_index])
    trials = [{"trial": f"round{round_index}-trial{i:03d}", "round": round_index, "values": values}
              for i, values in enumerate(space.sample(rng, config.trials_per_round))]
    return {"space": space.to_dict(), "trials": trials}


def trial_flags(values, base_flags, model_dir):
    """The training script's flags for one trial: ``base_flags``, then ``values`` over them.

    ``units`` and ``layers`` become ``--hidden_units=units,...,units`` (``layers`` times). Bools
    become ``--name`` / ``--noname``, floats are written with ``repr`` (exact round trip), and
    ``--model_dir=<model_dir>``, ``--noexport`` and ``--noevaluate_test`` come last.
    """
    values = dict(values)
    if "layers" in values:
        units, layers = values.pop("units"), values.pop("layers")
        values["hidden_units"] = ",".join([str(units)] * layers)
    flags = {**base_flags, **values, "model_dir": model_dir, "export": False,
             "evaluate_test": False}  # the test split is not for choosing
    lines = []
    for name, value in flags.items():
        if isinstance(value, bool):
            lines.append(f"--{'' if value else 'no'}{name}")
        else:
            lines.append(f"--{name}={value!r}" if isinstance(value, float) else f"--{name}={value}")
    return lines


def _run_trials(trials, config, started, stopped, finish):
    """Runs ``trials`` with at most ``config.parallel`` processes at once.

    Calls ``started(trial, pid)`` after starting a trial, ``finish(record)`` when it ends, and
    ``stopped(trial)`` for each trial killed because the search was interrupted.
    """
    queue, running = list(trials), []
    try:
        while queue or running:
            while queue and len(running) < config.parallel:
                trial = queue.pop(0)
                running.append((trial, *_start(trial, config)))
                started(trial, running[-1][1].pid)
            done = [entry for entry in running if entry[1].poll() is not None]
            if not done:
                time.sleep(0.1)
            for entry in done:
                running.remove(entry)
                trial, process, log = entry
                log.close()
                finish(_record(trial, process.returncode, config))
    finally:
        # Interrupted: stop the trials still running; they have no record, so they run again.
        for trial, process, log in running:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # Its session's group: pgid == pid.
            except ProcessLookupError:
                pass  # Ended, and reaped by poll(), just before the interruption.
            process.wait()
            log.close()
            stopped(trial)


def _model_dir(trial, config):
    return os.path.join(config.search_dir, trial["trial"])


def _start(trial, config):
    model_dir = _model_dir(trial, config)
    # Leftovers of an interrupted attempt would add a second set of events to TensorBoard.
    shutil.rmtree(model_dir, ignore_errors=True)
    os.makedirs(model_dir)
    log = open(os.path.join(model_dir, "train.log"), "w")
    command = [config.python, config.train_script,
               *trial_flags(trial["values"], config.base_flags, model_dir)]
    # A session of its own: Ctrl-C reaches only the search, which stops the trials itself, so no
    # trial dies of the signal first and gets recorded as failed.
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=config.env,
                               start_new_session=True)
    return process, log


def _record(trial, returncode, config):
    model_dir = _model_dir(trial, config)
    record = dict(trial, status="failed", error="", model_dir=model_dir)
    results_path = os.path.join(model_dir, "results.json")
    if returncode != 0:
        record["error"] = f"exit status {returncode} (see {model_dir}/train.log)"
        return record
    if not os.path.exists(results_path):
        record["error"] = "no results.json"
        return record
    with open(results_path) as f:
        results = json.load(f)  # Python's json reads NaN and Infinity.
    record.update({key: results.get(key) for key in _RESULT_KEYS})
    for key in (config.metric, "dev_loss", "train_loss"):
        value = results.get(key)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            record["error"] = f"non-finite or missing {key}={value}"
            return record
    record["status"] = "ok"
    return record


def _sorted_records(state, config):
    higher_is_better = METRICS[config.metric]

    def key(record):
        ok = record["status"] == "ok"
        value = record.get(config.metric) if ok else 0.0
        return (not ok, -value if higher_is_better else value, record["trial"])

    return sorted(state["records"].values(), key=key)


def _save(state, config):
    """Writes search.json, the results table and the best flagfile; returns the sorted records."""
    records = _sorted_records(state, config)
    _write_state(state, config)
    _write_atomic(os.path.join(config.search_dir, "results.json"), json.dumps(records, indent=2))
    _write_atomic(os.path.join(config.search_dir, "results.csv"), _csv(records, state, config))
    if records and records[0]["status"] == "ok":
        _write_atomic(os.path.join(config.search_dir, "best_flags.txt"),
                      _best_flagfile(records[0], config))
    return records


def _write_state(state, config):
    _write_atomic(os.path.join(config.search_dir, "search.json"), json.dumps(state, indent=2))


def _write_atomic(path, text):
    # A search killed while saving must still find a whole search.json when it restarts.
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def _csv(records, state, config):
    names = list(state["settings"]["space"])
    columns = ["rank", "trial", "round", "status", *_RESULT_KEYS, *names, "error"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    for rank, record in enumerate(records, start=1):
        row = {key: record.get(key, "") for key in columns}
        row.update(record["values"], rank=rank)
        writer.writerow(row)
    return buffer.getvalue()


def _best_flagfile(record, config):
    with open(os.path.join(record["model_dir"], "flags.txt")) as f:
        lines = [line for line in f.read().splitlines()
                 if not line.startswith(("--model_dir=", "--noexport", "--export",
                                         "--noevaluate_test"))]
    header = (f"# Best trial {record['trial']} of the search in {config.search_dir}: "
              f"{config.metric}={record[config.metric]}.\n"
              "# Reproduce: python scripts/train.py --flagfile=<this file> --model_dir=<new dir>\n")
    return header + "\n".join(lines) + "\n"


def write_hparams_config(space, search_dir):
    """Writes TensorBoard's ``hp.hparams_config`` for ``space`` into ``search_dir``.

    Ranges become ``RealInterval`` / ``IntInterval`` and choices ``Discrete`` domains. A tuple
    field of ``TrainConfig`` (``hidden_units``, ``keep_prob``) is logged by the trials as a string,
    so as a choice its domain is the strings they log (8 as "8", keep_prob 1 as "1.0") and as a
    range it gets no domain. ``units`` and ``layers`` are declared as the ``hidden_units`` the
    trials log, without a domain. The metrics are the trials' ``dev`` and ``train`` epoch
    accuracy and loss.
    """
    import tensorflow as tf  # Imported here: sampling and planning need no TensorFlow.
    from tensorboard.plugins.hparams import api as hp

    hparams = []
    for parameter in space.parameters:
        if parameter.name in DEPTH_PARAMETERS:
            # The trials log hidden_units ("8,8,8"), not units and layers: declare what they log.
            if "hidden_units" not in [h.name for h in hparams]:
                hparams.append(hp.HParam("hidden_units"))
            continue
        if parameter.name in _LOGGED_AS_STRING:
            domain = None
            if isinstance(parameter, search_space_lib.Choice):
                logged = [_logged_string(parameter.name, v) for v in parameter.values]
                domain = hp.Discrete(list(dict.fromkeys(logged)))  # "1" and "1.0" log alike.
        elif isinstance(parameter, search_space_lib.Choice):
            domain = hp.Discrete(list(parameter.values))
        elif isinstance(parameter, search_space_lib.IntUniform):
            domain = hp.IntInterval(parameter.low, parameter.high)
        else:
            domain = hp.RealInterval(float(parameter.low), float(parameter.high))
        hparams.append(hp.HParam(parameter.name, domain))
    from tfnet.training import outputs

    writer = tf.summary.create_file_writer(search_dir)
    with writer.as_default():
        hp.hparams_config(hparams=hparams, metrics=outputs.metrics())
    writer.close()


def _logged_string(name, value):
    """A sampled ``value`` of tuple field ``name`` as train.py logs it: parsed like its flag."""
    element = _LOGGED_AS_STRING[name]
    return ",".join(str(element(v)) for v in str(value).split(","))
