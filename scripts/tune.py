"""Random hyperparameter search, coarse to fine, over scripts/train.py runs (docs/methods.md §9).

    python scripts/tune.py --search_space=examples/search_space.json --search_dir=runs/search \
        --optimizer=keras_adam --epochs=20 --rounds=2 --trials_per_round=8 --parallel=2
    tensorboard --logdir runs/search          # the HParams dashboard shows every trial
    python scripts/train.py --flagfile=runs/search/best_flags.txt --model_dir=runs/best

Training flags (--dataset, --epochs, --optimizer, ...; see --helpfull) are the fixed values of
every trial; the search space file's parameters, named after those same flags (or units and
layers, which compose --hidden_units), are sampled. Ctrl-C or `kill` stops the search and its
running trials (exit status 128 + the signal's number); run the same command again to resume it
(finished trials are not re-run), or with a larger --rounds to add rounds. After `kill -9`, whose
trials go on running, the next run kills them before it runs them again.
"""

import dataclasses
import os
import signal
import sys

from absl import app, flags

from tfnet import config as config_lib
from tfnet import flags as tfnet_flags
from tfnet import search_space as search_space_lib
from tfnet import tuning

# Set by the search for each trial, so neither fixed nor searched.
_PER_TRIAL = ("model_dir", "export_dir", "export_name", "export", "evaluate_test")
_TRAIN_FLAGS = tuple(f.name for f in dataclasses.fields(config_lib.TrainConfig)
                     if f.name not in _PER_TRIAL)

tfnet_flags.define_train_flags(names=_TRAIN_FLAGS)
flags.DEFINE_string("search_space", None, "Search space file, YAML (.yaml, .yml) or JSON: "
                    "{\"learning_rate\": {\"scale\": \"log\", \"low\": 1e-4, \"high\": 1}, "
                    "...}; scales log, one_minus_log, int (low, high) and choice (values); names "
                    "are training flags.")
flags.DEFINE_string("search_dir", "runs/search", "Directory of the search: one run directory per "
                    "trial, results.csv/json, best_flags.txt, search.json (to resume).")
flags.DEFINE_integer("rounds", 2, "Coarse-to-fine rounds.", lower_bound=1)
flags.DEFINE_integer("trials_per_round", 8, "Random trials sampled per round.", lower_bound=1)
flags.DEFINE_integer("parallel", 1, "Trials trained at once, each in its own process "
                     "(1: one after another).", lower_bound=1)
flags.DEFINE_integer("search_seed", 0, "Seed of the hyperparameter sampling (--seed is each "
                     "trial's training seed).")
flags.DEFINE_enum("metric", "dev_accuracy", list(tuning.METRICS),
                  "Dev metric ranking the trials (accuracies: higher is better; loss: lower).")
flags.DEFINE_float("top_fraction", 0.25, "Fraction of a round's successful trials that the next "
                   "round's ranges shrink around, in (0, 1].")
flags.DEFINE_float("padding", 0.1, "Margin around the best trials of the next round's ranges, as "
                   "a fraction of the current width on the sampling scale, >= 0.", lower_bound=0.0)
flags.DEFINE_bool("narrow_choices", True, "Narrow choice parameters to the values the best trials "
                  "used (otherwise keep every value).")
flags.mark_flag_as_required("search_space")
flags.register_validator("top_fraction", lambda v: 0 < v <= 1,
                         message="--top_fraction must be in (0, 1]")
FLAGS = flags.FLAGS


def _check_search_space(path):
    """Loads the search space; raises ValidationError naming the file and the problem."""
    try:
        space = search_space_lib.SearchSpace.from_file(path)
    except ValueError as error:
        raise flags.ValidationError(f"--search_space={path}: {error}") from None
    unknown = [name for name in space.names
               if name not in _TRAIN_FLAGS + tuning.DEPTH_PARAMETERS]
    if unknown:
        raise flags.ValidationError(
            f"--search_space={path}: parameters must be training flags other than "
            f"{', '.join(_PER_TRIAL)}, or units and layers. Received: {', '.join(unknown)}")
    try:
        tuning.check_space(space)
    except ValueError as error:
        raise flags.ValidationError(f"--search_space={path}: {error}") from None
    # Validators run once every flag is parsed, so `present` is known (a flagfile counts).
    if _searches_depth(space) and FLAGS["hidden_units"].present:
        raise flags.ValidationError(
            f"--hidden_units must not be given when --search_space={path} has units and layers, "
            f"which compose each trial's hidden units. Received: "
            f"--hidden_units={','.join(FLAGS.hidden_units)}")
    return True


def _searches_depth(space):
    return any(name in space.names for name in tuning.DEPTH_PARAMETERS)


flags.register_validator("search_space", _check_search_space)


def _base_flags(space):
    """The fixed training flags, name -> value, as the trials receive them."""
    config = tfnet_flags.train_config_from_flags(FLAGS)
    # Sampled units and layers set hidden_units, so its default is no fixed flag.
    sampled = space.names + (("hidden_units",) if _searches_depth(space) else ())
    base = {}
    for name in _TRAIN_FLAGS:
        value = getattr(config, name)
        if value is not None and name not in sampled:
            base[name] = ",".join(map(str, value)) if isinstance(value, tuple) else value
    return base


def _report(record, done, total, best):
    outcome = (f"{FLAGS.metric}={record[FLAGS.metric]:.4f}" if record["status"] == "ok"
               else f"FAILED: {record['error']}")
    values = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in record["values"].items())
    leader = f"{best['trial']} {FLAGS.metric}={best[FLAGS.metric]:.4f}" if best else "none yet"
    print(f"[{done}/{total}] {record['trial']} {values}: {outcome} | best so far: {leader}",
          flush=True)


class _Interrupted(Exception):
    """SIGINT or SIGTERM, raised by ``_interrupt`` to unwind the search."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum, frame):
    raise _Interrupted(signum)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    space = search_space_lib.SearchSpace.from_file(FLAGS.search_space)
    scripts_dir = os.path.dirname(os.path.realpath(__file__))
    repo_root = os.path.dirname(scripts_dir)
    # The trials import the same tfnet as this script, installed or not.
    python_path = os.pathsep.join(filter(None, [repo_root, os.environ.get("PYTHONPATH")]))
    config = tuning.SearchConfig(
        search_dir=FLAGS.search_dir, train_script=os.path.join(scripts_dir, "train.py"),
        base_flags=_base_flags(space), rounds=FLAGS.rounds,
        trials_per_round=FLAGS.trials_per_round, parallel=FLAGS.parallel, seed=FLAGS.search_seed,
        metric=FLAGS.metric, top_fraction=FLAGS.top_fraction, padding=FLAGS.padding,
        narrow_choices=FLAGS.narrow_choices, env=dict(os.environ, PYTHONPATH=python_path),
    )
    # Ctrl-C (SIGINT) and `kill` (SIGTERM) unwind the search, which kills its running trials;
    # they have no record, so they run again when the search is restarted.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        records = tuning.run_search(space, config, report=_report)
    except _Interrupted as interruption:
        print(f"Search interrupted by {signal.Signals(interruption.signum).name}: finished trials "
              f"are recorded in {FLAGS.search_dir}/search.json and are not re-run; run the same "
              "command again to resume.", file=sys.stderr, flush=True)
        return 128 + interruption.signum
    failed = sum(r["status"] != "ok" for r in records)
    print(f"{len(records)} trials, {failed} failed. Table: {FLAGS.search_dir}/results.csv")
    print(f"TensorBoard HParams dashboard: tensorboard --logdir {FLAGS.search_dir}")
    if records[0]["status"] != "ok":
        print("No trial succeeded: see each trial's train.log.")
        return 1
    print(f"Best trial {records[0]['trial']}: {FLAGS.metric}={records[0][FLAGS.metric]:.4f}; "
          f"reproduce with: python scripts/train.py --flagfile={FLAGS.search_dir}/best_flags.txt")
    return 0


if __name__ == "__main__":
    tfnet_flags.run(main)
