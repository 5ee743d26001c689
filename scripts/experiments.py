"""Reproduces the course's classic comparisons with tfnet's own layers, optimisers and schedules.

    python scripts/experiments.py --experiment=all                 # about 70 s on 2 CPU cores
    python scripts/experiments.py --experiment=initialization --quick
    tensorboard --logdir runs/experiments/optimizers               # one run per variant

Each experiment trains its variants on a fixed seed and writes, under
<output_dir>/<experiment>/: results.md and results.csv (train / dev / test accuracy, final cost,
wall time), cost_curves.png, decision_boundaries.png (2-D data), learning_rate_sweep.png
(batch_norm) and one TensorBoard run directory per variant. The tables end with the ordering the
experiment is expected to show and whether it holds; the exit status is 2 when one does not.
Without mnist_t10k in --data_dir, --experiment=all runs the others and says it skipped batch_norm.

The experiments (--experiment):
"""

import os
import sys
import time

from absl import app, flags, logging

from tfnet import flags as tfnet_flags
from tfnet.experiments import setups

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
SHARED_TFDS = os.path.join(os.path.dirname(REPO_ROOT), "shared", "tfds")

__doc__ += "\n".join(f"\n  {e.name}: {e.setup}\n    Expected: {e.expected}." for e in setups.EXPERIMENTS.values())

FLAGS = flags.FLAGS
flags.DEFINE_enum("experiment", "all", [*setups.NAMES, "all"], "Which experiment to run, or all of them in turn.")
flags.DEFINE_string("output_dir", "runs/experiments", "Where each experiment's tables, PNGs and TensorBoard runs go.")
flags.DEFINE_string(
    "data_dir", SHARED_TFDS if os.path.isdir(SHARED_TFDS) else None,
    "TFDS data directory holding mnist_t10k, for batch_norm (default: ../shared/tfds beside the "
    "repository when it exists, else TFDS' own). Nothing is downloaded.",
)
flags.DEFINE_bool("quick", False, "Shortened versions (fewer epochs and variants), as the tests run them.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # The checkpoint writer logs every save at INFO.
    tfnet_flags.import_tensorflow_quietly()
    from tfnet import experiments  # Imported after flag parsing: TensorFlow loads only for real work.

    names = setups.NAMES if FLAGS.experiment == "all" else (FLAGS.experiment,)
    runnable, skipped = experiments.runnable(names, FLAGS.data_dir)
    for name, reason in skipped.items():  # found before minutes of other experiments
        if FLAGS.experiment != "all":
            print(f"error: --experiment={name}: {reason}", file=sys.stderr)
            return 1
        print(f"skipping {name}: {reason}", file=sys.stderr)
    started = time.perf_counter()
    reports = [experiments.run(name, FLAGS.output_dir, quick=FLAGS.quick, data_dir=FLAGS.data_dir)
               for name in runnable]
    print("\n" + "\n".join(r.markdown for r in reports))
    for report in reports:
        print(f"{report.experiment}: {', '.join(report.figures)}")
    print(f"TensorBoard: tensorboard --logdir {FLAGS.output_dir}  ({len(reports)} experiments in "
          f"{time.perf_counter() - started:.0f} s)")
    return 0 if all(r.holds for r in reports) else 2


if __name__ == "__main__":
    tfnet_flags.run(main)
