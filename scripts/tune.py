"""Random hyperparameter search, coarse to fine, over tfnet training runs on Ray Tune (docs/methods.md §9).

    python scripts/tune.py --search_space=examples/search_space.json --search_dir=runs/search \
        --optimizer=keras_adam --epochs=20 --rounds=2 --trials_per_round=8
    python scripts/tune.py ... --ray_address=10.0.0.5:6379    # on a running Ray cluster
    tensorboard --logdir runs/search          # the HParams dashboard shows every trial
    python scripts/train.py --flagfile=runs/search/best_flags.txt --model_dir=runs/best

Training flags (--dataset, --epochs, --optimizer, ...; see --helpfull) are the fixed values of
every trial; the search space file's parameters, named after those same flags (or units and
layers, which compose --hidden_units), are sampled. Each trial trains inside a Ray worker: Ray
starts on this machine for the search unless --ray_address names a cluster; --cpus_per_trial and
--max_concurrent_trials size the work; --scheduler=asha stops poor trials early. Ctrl-C or
`kill` stops the search and its running trials (exit status 128 + the signal's number); run the
same command again to resume it (finished trials are not re-run; running ones resume from their
last checkpoint), also after `kill -9`, or with a larger --rounds to add rounds.
"""

import dataclasses
import signal
import sys

from absl import app, flags

from tfnet import config as config_lib
from tfnet import flags as tfnet_flags
from tfnet import search_space as search_space_lib
from tfnet import trials, tuning

_TRAIN_FLAGS = tuple(f.name for f in dataclasses.fields(config_lib.TrainConfig)
                     if f.name not in tuning.PER_TRIAL)

tfnet_flags.define_train_flags(names=_TRAIN_FLAGS)
tfnet_flags.define_config_flags(trials.ClusterConfig)
flags.DEFINE_string("search_space", None, "Search space file, YAML (.yaml, .yml) or JSON: "
                    "{\"learning_rate\": {\"scale\": \"log\", \"low\": 1e-4, \"high\": 1}, "
                    "...}; scales log, one_minus_log, int (low, high) and choice (values); names "
                    "are training flags.")
flags.DEFINE_string("search_dir", "runs/search", "Directory of the search: one run directory per "
                    "trial, results.csv/json, best_flags.txt, search.json (to resume).")
flags.DEFINE_integer("rounds", 2, "Coarse-to-fine rounds.", lower_bound=1)
flags.DEFINE_integer("trials_per_round", 8, "Random trials sampled per round.", lower_bound=1)
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
flags.DEFINE_enum("scheduler", "none", list(tuning.SCHEDULERS), "none: every trial trains to the "
                  "end; asha: Ray Tune's ASHA (asynchronous successive halving) stops trials whose "
                  "dev metric at a rung (--asha_grace_period x --asha_reduction_factor^k epochs) "
                  "is not among the best 1/--asha_reduction_factor.")
flags.DEFINE_integer("asha_grace_period", 1, "Epochs a trial trains before ASHA may stop it.",
                     lower_bound=1)
flags.DEFINE_float("asha_reduction_factor", 3.0, "ASHA's reduction factor eta, > 1: each rung "
                   "keeps the best 1/eta of the trials.")
flags.mark_flag_as_required("search_space")
flags.register_validator("top_fraction", lambda v: 0 < v <= 1,
                         message="--top_fraction must be in (0, 1]")
flags.register_validator("asha_reduction_factor", lambda v: v > 1,
                         message="--asha_reduction_factor must be > 1")
FLAGS = flags.FLAGS


def _check_search_space(path):
    """Loads the search space; raises ValidationError naming the file and the problem."""
    try:
        space = search_space_lib.SearchSpace.from_file(path)
    except ValueError as error:
        raise flags.ValidationError(f"--search_space={path}: {error}") from None
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


def _report(record, done, total, best):
    if record["status"] == "failed":
        outcome = f"FAILED: {record['error']}"
    else:
        outcome = f"{FLAGS.metric}={record[FLAGS.metric]:.4f}"
        if record["status"] == "stopped":
            outcome = f"stopped by ASHA after epoch {record['epochs']}, {outcome}"
    values = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in record["values"].items())
    leader = f"{best['trial']} {FLAGS.metric}={best[FLAGS.metric]:.4f}" if best else "none yet"
    print(f"[{done}/{total}] {record['trial']} {values}: {outcome} | best so far: {leader}",
          flush=True)


def _interrupt(signum, frame):
    raise trials.Interrupted(signum)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    space = search_space_lib.SearchSpace.from_file(FLAGS.search_space)
    config = tuning.SearchConfig(
        search_dir=FLAGS.search_dir, base_config=tfnet_flags.train_config_from_flags(FLAGS),
        rounds=FLAGS.rounds, trials_per_round=FLAGS.trials_per_round, seed=FLAGS.search_seed,
        metric=FLAGS.metric, top_fraction=FLAGS.top_fraction, padding=FLAGS.padding,
        narrow_choices=FLAGS.narrow_choices, scheduler=FLAGS.scheduler,
        asha_grace_period=FLAGS.asha_grace_period,
        asha_reduction_factor=FLAGS.asha_reduction_factor,
    )
    cluster = tfnet_flags.config_from_flags(trials.ClusterConfig)
    # Ctrl-C (SIGINT) and `kill` (SIGTERM) unwind the search (while trials run, once Tune has
    # stopped them); the trials running have no record, so they run again (from their last
    # checkpoint) when it is restarted.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        records = tuning.run_search(space, config, cluster, report=_report)
    except ValueError as error:  # another search holds the directory, an unusable cluster
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    except trials.Interrupted as interruption:
        print(f"Search interrupted by {signal.Signals(interruption.signum).name}: finished trials "
              f"are recorded in {FLAGS.search_dir}/search.json and are not re-run; run the same "
              "command again to resume.", file=sys.stderr, flush=True)
        return 128 + interruption.signum
    counts = {status: sum(r["status"] == status for r in records)
              for status in ("ok", "stopped", "failed")}
    print(f"{len(records)} trials: {counts['ok']} trained to the end, {counts['stopped']} stopped "
          f"early, {counts['failed']} failed. Table: {FLAGS.search_dir}/results.csv")
    print(f"TensorBoard HParams dashboard: tensorboard --logdir {FLAGS.search_dir}")
    if records[0]["status"] != "ok":
        print("No trial succeeded: see each one's error in results.csv.")
        return 1
    print(f"Best trial {records[0]['trial']}: {FLAGS.metric}={records[0][FLAGS.metric]:.4f}; "
          f"reproduce with: python scripts/train.py --flagfile={FLAGS.search_dir}/best_flags.txt")
    return 0


if __name__ == "__main__":
    tfnet_flags.run(main)
