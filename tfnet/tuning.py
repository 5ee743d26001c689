"""Hyperparameter search: coarse-to-fine rounds of random trials, each a tfnet run on Ray Tune.

docs/methods.md §9. Round 0 samples ``trials_per_round`` trials from the search space with
``numpy.random.default_rng([seed, 0])``; round k+1 samples from ``search_space.narrow`` of round
k's space around its best ``top_fraction`` of successful trials (all of round k's space again if
none succeeded). Each trial is the fixed ``base_config`` with the sampled values in place of the
fields of the same names, ``model_dir=<search_dir>/<trial>``, no export and no test evaluation
(the test split plays no part in choosing). Two parameter names are not fields: ``units`` and
``layers`` (``DEPTH_PARAMETERS``) are sampled together and give the trial
``hidden_units=(units,) * layers``, so that depth is searched with one width for every hidden
layer. A round's trials run on Ray Tune through ``tfnet.trials`` (this machine, or a cluster:
``cluster``), each reporting its dev and train metrics after every evaluation; with
``scheduler="asha"`` Tune's ASHA stops the poor ones at its rungs ("stopped"). A trial fails when
its configuration is refused, its cost becomes non-finite, or it ends with a non-finite loss or
metric; the failure is recorded with its reason and the search goes on.

The search directory holds:

- ``<trial>/``: the trial's run directory (TensorBoard events with ``hp.hparams``, ``flags.txt``,
  ``results.json``);
- TensorBoard's ``hp.hparams_config`` (the searched parameters with round 0's domains, dev and
  train accuracy and loss as metrics), so ``tensorboard --logdir <search_dir>`` shows every trial
  on the HParams dashboard;
- ``results.csv`` and ``results.json``: every trial, sorted by the metric (those that ran to the
  end first, then those ASHA stopped, at their last evaluation, then failures), with the Ray
  node each ran on and its attempts;
- ``best_flags.txt``: the best trial's flags without those the search sets per trial
  (``PER_TRIAL``), which ``scripts/train.py --flagfile=`` reproduces (bit for bit with
  ``--deterministic``);
- ``search.json``: the settings, each round's space and trials, and each finished trial's record.
  A restarted search reads it and runs only the trials without a record (rounds may be added):
  finished trials, failed and stopped ones included, are not re-run; a trial that was running
  when the search was killed resumes from its run directory's last checkpoint;
- ``search.lock``: locked (``tfnet.locks``) while a search runs, so a second search of the same
  directory is refused, naming the process that holds it; the lock goes with its process,
  however that ends, and so do its trials (Ray ends a job's trials with its driver);
- ``tune/``: Ray Tune's files while a round runs.
"""

import csv
import dataclasses
import io
import json
import math
import os

import numpy as np

from tfnet._checks import fail
from tfnet import config as config_lib
from tfnet import locks
from tfnet import search_space as search_space_lib

# Whether a larger value is better, for each metric of results.json a search can rank by.
METRICS = {"dev_accuracy": True, "best_dev_accuracy": True, "dev_loss": False}

# results.json values copied into the records and the table. Test figures are left out on
# purpose: choosing among trials by the test set would make it a second dev set.
_RESULT_KEYS = ("dev_accuracy", "dev_loss", "best_dev_accuracy", "train_accuracy", "train_loss",
                "epochs")

# TrainConfig fields the search sets for each trial: neither fixed nor searched.
PER_TRIAL = ("model_dir", "export_dir", "export_name", "export", "evaluate_test", "resume",
             "overwrite")

# Search-space parameters that are not training fields: sampled together, they set hidden_units.
DEPTH_PARAMETERS = ("units", "layers")

SCHEDULERS = ("none", "asha")

# Records' order: trials that ran to the end, then those stopped early, then failures.
_STATUS_ORDER = {"ok": 0, "stopped": 1, "failed": 2}

_FIELDS = {field.name: field for field in dataclasses.fields(config_lib.TrainConfig)}

# TrainConfig's tuple fields (hidden_units, keep_prob) -> their element type: a run logs them to
# hp.hparams as comma-joined strings ("16,8", "1.0"), whatever type a search samples them as.
_LOGGED_AS_STRING = {name: field.metadata["element"] for name, field in _FIELDS.items()
                     if isinstance(field.default, tuple)}


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """How to run a search; every field is checked on construction.

    Args:
      search_dir: directory of the search (created; reused to resume). On a Ray cluster, on a
        file system every node mounts at the same path.
      base_config: the fixed training settings, a ``TrainConfig`` (sampled values replace its
        fields; the ``PER_TRIAL`` fields are set by the search). Default: ``TrainConfig()``.
      rounds: number of coarse-to-fine rounds, >= 1. Default 2.
      trials_per_round: random trials per round, >= 1. Default 8.
      seed: seed of the sampling. Default 0.
      metric: results.json key ranking the trials, one of ``METRICS``. Default "dev_accuracy".
      top_fraction: fraction of a round's successful trials the next round zooms around, in
        (0, 1]; at least one trial. Default 0.25.
      padding: margin of the narrowed ranges, as a fraction of the current width, >= 0.
        Default 0.1.
      narrow_choices: narrow choice parameters to the values of the best trials. Default True.
      scheduler: "none" (every trial runs to its end) or "asha" (Tune's ASHA on the dev metric
        at evaluation points, ``tfnet.trials.Asha``). Default "none".
      asha_grace_period: epochs before ASHA may stop a trial, >= 1. Default 1.
      asha_reduction_factor: ASHA's η, > 1: a rung keeps the best 1/η. Default 3.
    """

    search_dir: str
    base_config: config_lib.TrainConfig = dataclasses.field(default_factory=config_lib.TrainConfig)
    rounds: int = 2
    trials_per_round: int = 8
    seed: int = 0
    metric: str = "dev_accuracy"
    top_fraction: float = 0.25
    padding: float = 0.1
    narrow_choices: bool = True
    scheduler: str = "none"
    asha_grace_period: int = 1
    asha_reduction_factor: float = 3.0

    def __post_init__(self):
        for name in ("rounds", "trials_per_round", "asha_grace_period"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(name, "an integer >= 1", value)
        if self.metric not in METRICS:
            fail("metric", f"one of {', '.join(METRICS)}", self.metric)
        if not 0 < self.top_fraction <= 1:
            fail("top_fraction", "in (0, 1]", self.top_fraction)
        if not self.padding >= 0:
            fail("padding", ">= 0", self.padding)
        if self.scheduler not in SCHEDULERS:
            fail("scheduler", f"one of {', '.join(SCHEDULERS)}", self.scheduler)
        if not self.asha_reduction_factor > 1:
            fail("asha_reduction_factor", "> 1", self.asha_reduction_factor)
        config_lib.validate(self.base_config)

    def settings(self, space):
        """What must match for a search directory to be resumed (``rounds`` may grow)."""
        base = {name: value for name, value in dataclasses.asdict(self.base_config).items()
                if name not in PER_TRIAL}
        return json.loads(json.dumps(dict(
            space=space.to_dict(), base_config=base, trials_per_round=self.trials_per_round,
            seed=self.seed, metric=self.metric, top_fraction=self.top_fraction,
            padding=self.padding, narrow_choices=self.narrow_choices, scheduler=self.scheduler,
            asha_grace_period=self.asha_grace_period,
            asha_reduction_factor=self.asha_reduction_factor)))


def check_space(space, base_config=None):
    """Raises ValueError unless every parameter of ``space`` can set a training field.

    Names must be ``TrainConfig`` fields other than ``PER_TRIAL``, or ``units`` and ``layers``;
    each parameter's values must suit its field (``field_value``): an integer field (batch_size,
    epochs) an int range or a choice of integers, a float field any range or numeric choice, a
    bool or str field a choice of those. ``units`` and ``layers`` come together, each an int
    range or a choice of integers >= 1, with no ``hidden_units`` in ``space`` or set in
    ``base_config`` away from its default (they set it).
    """
    unknown = [name for name in space.names if name not in DEPTH_PARAMETERS
               and (name not in _FIELDS or name in PER_TRIAL)]
    if unknown:
        fail("search space", f"made of training flags other than {', '.join(PER_TRIAL)}, or "
              "units and layers", unknown)
    for parameter in space.parameters:
        if parameter.name not in DEPTH_PARAMETERS:
            _check_parameter(parameter)
    searched = [name for name in DEPTH_PARAMETERS if name in space.names]
    if not searched:
        return
    if len(searched) == 1:
        fail("search space", "given units and layers together (they compose hidden_units)",
              searched)
    for name in DEPTH_PARAMETERS:
        parameter = space[name]
        if isinstance(parameter, search_space_lib.IntUniform):
            values = [parameter.low]
        elif isinstance(parameter, search_space_lib.Choice):
            values = list(parameter.values)
        else:
            fail(f"{name}.scale", "int or choice", parameter.scale)
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            fail(name, "sampled from integers >= 1", parameter.to_dict())
    if "hidden_units" in space.names:
        fail("search space", "free of hidden_units when it has units and layers (they compose "
              "it)", list(space.names))
    default = _FIELDS["hidden_units"].default
    if base_config is not None and base_config.hidden_units != default:
        fail("base_config.hidden_units", "left at its default when the space has units and "
              "layers (they compose it)", base_config.hidden_units)


def _check_parameter(parameter):
    kind = _field_kind(parameter.name)
    if isinstance(parameter, search_space_lib.Choice):
        for value in parameter.values:
            field_value(parameter.name, value)
        return
    if kind in (bool, str) or (kind is int and not isinstance(parameter,
                                                              search_space_lib.IntUniform)):
        rule = "a choice" if kind in (bool, str) else "an int range or a choice of integers"
        fail(f"{parameter.name}.scale", f"{rule} for a {kind.__name__} training flag",
              parameter.scale)
    for value in (parameter.low, parameter.high):
        field_value(parameter.name, value)


def _field_kind(name):
    field = _FIELDS[name]
    return type(field.default) if field.default is not None else field.type


def field_value(name, value):
    """A sampled ``value`` as the ``TrainConfig`` field ``name`` holds it, parsed as its flag
    is: a tuple field from "16,8", 8 or 0.5; an int from an int; a float from a number; a bool
    or a str as it is. Raises ValueError naming the parameter when the value does not fit."""
    kind = _field_kind(name)
    if kind is tuple:
        element = _LOGGED_AS_STRING[name]
        try:
            return tuple(element(part) for part in str(value).split(","))
        except ValueError:
            fail(name, f"comma-separated {element.__name__}s for its training flag", value)
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int and not (numeric and isinstance(value, int)):
        fail(name, "sampled as integers for its training flag", value)
    if kind is float and not numeric:
        fail(name, "sampled as numbers for its training flag", value)
    if kind in (bool, str) and not isinstance(value, kind):
        fail(name, f"sampled as {kind.__name__} values for its training flag", value)
    return float(value) if kind is float else value


def trial_config(values, base_config, model_dir):
    """The ``TrainConfig`` of one trial: ``base_config`` with ``values`` in place.

    ``units`` and ``layers`` become ``hidden_units=(units,) * layers``; the run goes to
    ``model_dir`` (made absolute), resumes there, exports nothing and never reads the test split.

    Raises:
      ValueError: the sampled configuration is refused (``config.validate``).
    """
    values = dict(values)
    depth = {}
    if "layers" in values:
        units, layers = values.pop("units"), values.pop("layers")
        depth["hidden_units"] = (units,) * layers
    changes = {name: field_value(name, value) for name, value in values.items()}
    config = dataclasses.replace(
        base_config, **changes, **depth, model_dir=os.path.abspath(model_dir), export=False,
        evaluate_test=False, resume=True, overwrite=False)
    return config_lib.validate(config)


def run_search(space, config, cluster=None, report=None):
    """Runs (or resumes) the search; returns the records sorted best first, failures last.

    Args:
      space: the round-0 ``search_space.SearchSpace``; names are training flag names.
      config: a ``SearchConfig``.
      cluster: a ``tfnet.trials.ClusterConfig``: where the trials run and how many at once.
        Default: Ray on this machine, a CPU per trial.
      report: optional callable ``report(record, done, total, best)`` after each trial, with the
        number of trials finished, the search's total, and the best record so far (or None).

    Raises:
      ValueError: when ``check_space`` refuses ``space`` and ``config.base_config``, when
        ``config.search_dir`` holds a search with other settings, when another search of
        ``config.search_dir`` is running, or when ``cluster`` cannot be used.
      tfnet.trials.Interrupted: SIGINT or SIGTERM while trials ran (Tune stopped them first;
        the finished ones are recorded), and whatever ``report`` raised.
    """
    from tfnet import trials

    check_space(space, config.base_config)
    # Refuses ASHA settings that cannot stop a trial, and tasks of several trials under ASHA.
    trials.check_task_size(cluster or trials.ClusterConfig(), _scheduler(config, space.to_dict()))
    try:
        lock = locks.DirectoryLock.acquire(config.search_dir, "search.lock")
    except locks.LockHeldError as held:
        fail("search_dir", f"free of another running search ({held.holder} holds search.lock)",
              config.search_dir)
    with lock:
        state = _load(space, config)  # before Ray starts: refuses another search's directory
        with trials.connect(cluster or trials.ClusterConfig()):
            if state is None:
                write_hparams_config(space, config.search_dir)
                state = {"settings": config.settings(space), "rounds": [], "records": {}}
            return _run_rounds(state, config, cluster, report)


def _run_rounds(state, config, cluster, report):
    from tfnet import trials

    total = config.rounds * config.trials_per_round

    def finish(record):
        state["records"][record["trial"]] = record
        records = _save(state, config)
        best = records[0] if records[0]["status"] == "ok" else None
        if report is not None:
            report(record, len(state["records"]), total, best)

    for round_index in range(config.rounds):
        if round_index == len(state["rounds"]):
            state["rounds"].append(_plan_round(state, config, round_index))
            _save(state, config)
        planned = state["rounds"][round_index]
        pending, runs = {}, []
        for trial in planned["trials"]:
            if trial["trial"] in state["records"]:
                continue
            try:
                train_config = trial_config(trial["values"], config.base_config,
                                            _model_dir(trial, config))
            except ValueError as error:
                finish(_failed(trial, config, f"ValueError: {error}"))
                continue
            pending[trial["trial"]] = trial
            runs.append(trials.Trial(trial["trial"], train_config))
        trials.run(runs, os.path.join(config.search_dir, "tune"), cluster,
                   on_outcome=lambda outcome: finish(
                       _record(pending[outcome.name], outcome, config)),
                   scheduler=_scheduler(config, planned["space"]))
    return _sorted_records(state, config)


def _scheduler(config, space_dict):
    """The round's ``tfnet.trials.Asha`` (on the dev metric, up to the most epochs a trial of
    ``space_dict`` can run), or None."""
    from tfnet import trials

    if config.scheduler != "asha":
        return None
    epochs = space_dict.get("epochs")
    if epochs is None:
        max_epochs = config.base_config.epochs
    else:
        max_epochs = epochs["high"] if epochs["scale"] == "int" else max(epochs["values"])
    return trials.Asha(max_epochs=max_epochs,
                       metric="dev_loss" if config.metric == "dev_loss" else "dev_accuracy",
                       grace_period=config.asha_grace_period,
                       reduction_factor=config.asha_reduction_factor)


def _load(space, config):
    """The state of the search in ``config.search_dir``, or None when there is none yet."""
    path = os.path.join(config.search_dir, "search.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        state = json.load(f)
    settings = config.settings(space)
    differing = sorted(k for k in settings if state["settings"].get(k) != settings[k])
    if differing:
        fail("search_dir", "a new directory or one holding the same search (it differs in "
              f"{', '.join(differing)})", config.search_dir)
    return state


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


def _model_dir(trial, config):
    return os.path.join(os.path.abspath(config.search_dir), trial["trial"])


def _failed(trial, config, error, outcome=None):
    record = dict(trial, status="failed", error=error, model_dir=_model_dir(trial, config))
    if outcome is not None:
        record.update(node_id=outcome.node_id, attempts=list(outcome.attempts))
    return record


def _record(trial, outcome, config):
    """The trial's record from its ``tfnet.trials.Outcome`` and, if it ran to the end, its run's
    ``results.json``."""
    if outcome.status in ("diverged", "failed"):
        return _failed(trial, config, outcome.error, outcome)
    record = dict(trial, status=outcome.status, error="", model_dir=_model_dir(trial, config),
                  node_id=outcome.node_id, attempts=list(outcome.attempts))
    if outcome.status == "stopped":  # by ASHA: its last evaluation stands for it
        last = outcome.last
        record.update({key: last[key] for key in ("dev_accuracy", "dev_loss", "train_accuracy",
                                                  "train_loss")},
                      best_dev_accuracy=None, epochs=last["epoch"])
        return record
    with open(os.path.join(record["model_dir"], "results.json")) as f:
        results = json.load(f)  # Python's json reads NaN and Infinity.
    record.update({key: results.get(key) for key in _RESULT_KEYS})
    for key in (config.metric, "dev_loss", "train_loss"):
        value = results.get(key)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return _failed(trial, config, f"non-finite or missing {key}={value}", outcome)
    return record


def _sorted_records(state, config):
    higher_is_better = METRICS[config.metric]

    def key(record):
        value = record.get(config.metric)
        if record["status"] == "failed" or value is None or not math.isfinite(value):
            value = 0.0
        return (_STATUS_ORDER[record["status"]], -value if higher_is_better else value,
                record["trial"])

    return sorted(state["records"].values(), key=key)


def _save(state, config):
    """Writes search.json, the results table and the best flagfile; returns the sorted records."""
    records = _sorted_records(state, config)
    _write_atomic(os.path.join(config.search_dir, "search.json"), json.dumps(state, indent=2))
    _write_atomic(os.path.join(config.search_dir, "results.json"), json.dumps(records, indent=2))
    _write_atomic(os.path.join(config.search_dir, "results.csv"), _csv(records, state))
    if records and records[0]["status"] == "ok":
        _write_atomic(os.path.join(config.search_dir, "best_flags.txt"),
                      _best_flagfile(records[0], config))
    return records


def _write_atomic(path, text):
    # A search killed while saving must still find a whole search.json when it restarts.
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def _csv(records, state):
    names = list(state["settings"]["space"])
    columns = ["rank", "trial", "round", "status", *_RESULT_KEYS, *names, "node_id", "attempts",
               "error"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    for rank, record in enumerate(records, start=1):
        row = {key: record.get(key, "") for key in columns}
        row.update(record["values"], rank=rank, attempts=len(record.get("attempts", ())))
        writer.writerow(row)
    return buffer.getvalue()


def _best_flagfile(record, config):
    """The best trial's flags.txt without the flags the search sets per trial."""
    with open(os.path.join(record["model_dir"], "flags.txt")) as f:
        lines = [line for line in f.read().splitlines()
                 if not line.lstrip("-").removeprefix("no").split("=")[0] in PER_TRIAL]
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
