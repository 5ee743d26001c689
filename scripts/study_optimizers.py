"""A fair optimiser study: every optimiser's learning rate tuned on dev, then rerun over seeds.

    python scripts/study_optimizers.py                      # moons, circles, flower: 8 optimisers
    python scripts/study_optimizers.py --problems=moons,mnist_t10k --data_dir=../shared/tfds
    python scripts/study_optimizers.py --ray_address=auto   # on the Ray cluster of this machine
    tensorboard --logdir runs/study                         # every trial, on the HParams dashboard

Per problem and optimiser (ours and Keras' twins): the learning rate tuned over a log grid by dev
accuracy (seed 0; the test split is never read to choose), the chosen rate trained with --seeds
seeds, and only those runs evaluated on the test split. Writes results.csv, report.md,
sensitivity.png and profile.png into --output_dir (and says where), one run directory per trial.
Each trial trains inside a Ray worker: Ray starts on this machine for the study unless
--ray_address names a cluster. Ctrl-C or `kill` stops it (exit status 128 + the signal's number);
running the same command again reads the finished trials back and runs only the others.
"""

import signal
import sys

from absl import flags

from tfnet import flags as tfnet_flags

tfnet_flags.import_tensorflow_quietly()
from tfnet import study, trials  # noqa: E402  (TensorFlow imported quietly first)

tfnet_flags.define_config_flags(study.StudyConfig)
tfnet_flags.define_config_flags(trials.ClusterConfig)
FLAGS = flags.FLAGS


def _problems_available(values):
    from tfnet import data

    for name in values["problems"]:
        try:
            data.check_available(name, values["data_dir"])
        except data.DatasetNotFoundError as error:
            raise flags.ValidationError(f"--problems={','.join(values['problems'])}: {error}") from None
    return True


flags.register_multi_flags_validator(["problems", "data_dir"], _problems_available,
                                     message="invalid --problems")


def _interrupt(signum, frame):
    raise trials.Interrupted(signum)


def main(argv):
    del argv
    from tfnet import locks
    from tfnet.study import runner

    config = tfnet_flags.config_from_flags(study.StudyConfig)
    cluster = tfnet_flags.config_from_flags(trials.ClusterConfig)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        report, paths = study.run(config, cluster)
    except (locks.LockHeldError, ValueError, runner.TrialsFailedError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except trials.Interrupted as interruption:
        print(f"Study interrupted by {signal.Signals(interruption.signum).name}: finished trials "
              f"are kept in {config.output_dir}; run the same command again to resume.",
              file=sys.stderr, flush=True)
        return 128 + interruption.signum
    print("\n" + report)
    for name, path in paths.items():
        print(f"{name}: {path}")
    print(f"TensorBoard: tensorboard --logdir {config.output_dir}")
    return 0


if __name__ == "__main__":
    tfnet_flags.run(main)
