"""Trains a tfnet classifier, logs it to TensorBoard and exports a SavedModel.

    python scripts/train.py                      # the main job: two moons, embedded, no download
    python scripts/train.py --dataset=mnist_t10k --data_dir=../shared/tfds --hidden_units=256,128
    python scripts/train.py --flagfile=runs/moons/flags.txt   # reproduce a run

Every flag is checked before any work: an invalid value exits with status 1 and one line naming
the flag, the value and what is allowed. `--helpfull` lists every flag with its help.
"""

import sys

from absl import app, flags, logging

from tfnet import flags as tfnet_flags

tfnet_flags.define_train_flags()
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = tfnet_flags.train_config_from_flags(FLAGS)
    logging.set_verbosity(logging.WARNING)  # TensorFlow's SavedModel writer logs every file.
    from tfnet import training  # Imported after validation: TensorFlow loads only for real work.

    result = training.train(config)
    print(f"TensorBoard logs: {result.run_dir}  (open with: tensorboard --logdir {result.run_dir})")
    print(f"Flags of this run: {result.run_dir}/flags.txt  (reproduce with --flagfile=...)")
    if result.export_path:
        print(f"SavedModel: {result.export_path}  (serving_default takes raw inputs)")
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
