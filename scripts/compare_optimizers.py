"""Compares optimisers (ours and Keras' built-ins) on one model, one initialisation, one data order.

Prints a table (final train/dev loss and accuracy, epochs to a target loss, ms per step) and
writes loss curves (PNG and TensorBoard, one run per optimiser) and the optimisers' paths on an
elongated quadratic bowl (PNG) under --output_dir. Example:

  python scripts/compare_optimizers.py --optimizers=gd,momentum,adam,keras_adam --epochs=20
"""

import sys

from absl import flags

from tfnet import compare, data, optimizers
from tfnet import flags as tfnet_flags

FLAGS = flags.FLAGS
defaults = compare.CompareConfig()
flags.DEFINE_list("optimizers", list(optimizers.NAMES), f"Registry names to compare, among {', '.join(optimizers.NAMES)}.")
flags.DEFINE_float("learning_rate", defaults.learning_rate, "α of gd, momentum and their Keras twins.")
flags.DEFINE_float("adaptive_learning_rate", defaults.adaptive_learning_rate, "α of rmsprop, adam and their Keras twins.")
flags.DEFINE_enum("dataset", defaults.dataset, list(data.EMBEDDED_DATASETS), "The 2-D data set (train / dev / test splits as scripts/train.py cuts them).")
flags.DEFINE_integer("epochs", defaults.epochs, "Passes over the training set.", lower_bound=1)
flags.DEFINE_float("target_loss", defaults.target_loss, "Training loss whose first epoch is reported.")
# --batch_size, --hidden_units, --seed: the project's shared definitions (help, validators).
tfnet_flags.define_train_flags(names=("batch_size", "hidden_units", "seed"))
flags.DEFINE_string("output_dir", "runs/compare_optimizers", "Where the PNGs and one run directory per optimiser (TensorBoard train/ and dev/) go.")
flags.register_validator("optimizers", lambda names: set(names) <= set(optimizers.NAMES),
                         message=f"--optimizers must be among {', '.join(optimizers.NAMES)}")
flags.register_validator("learning_rate", lambda v: v > 0, message="--learning_rate must be > 0")
flags.register_validator("adaptive_learning_rate", lambda v: v > 0, message="--adaptive_learning_rate must be > 0")


def main(argv):
    del argv
    config = compare.CompareConfig(
        optimizers=tuple(FLAGS.optimizers), learning_rate=FLAGS.learning_rate,
        adaptive_learning_rate=FLAGS.adaptive_learning_rate, dataset=FLAGS.dataset,
        hidden_units=tuple(int(u) for u in FLAGS.hidden_units), batch_size=FLAGS.batch_size,
        epochs=FLAGS.epochs, target_loss=FLAGS.target_loss, seed=FLAGS.seed,
    )
    print(compare.run(config, FLAGS.output_dir))
    return 0


if __name__ == "__main__":
    tfnet_flags.run(main)
