"""Compares optimisers (ours and Keras' built-ins) on one model, one initialisation, one data order.

    python scripts/compare_optimizers.py --optimizers=gd,momentum,adam,keras_adam --epochs=20
    tensorboard --logdir runs/compare_optimizers      # one run per optimiser, curves overlaid

Every optimiser trains the same network from the same initial weights on the same sequence of
mini-batches (tfnet.training, one run per optimiser). Prints a table (final train/dev loss and
accuracy, epochs to a target loss, ms per step) and writes, under --output_dir, the loss curves
(PNG, and TensorBoard through the runs) and the optimisers' paths on an elongated quadratic bowl
(PNG), and says where each went.
"""

from absl import flags

from tfnet import flags as tfnet_flags

tfnet_flags.import_tensorflow_quietly()
from tfnet import compare  # noqa: E402  (TensorFlow imported quietly first)

tfnet_flags.define_config_flags(compare.CompareConfig)
flags.DEFINE_string("output_dir", "runs/compare_optimizers",
                    "Where the PNGs and one run directory per optimiser (TensorBoard train/ and "
                    "dev/) go.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    config = tfnet_flags.config_from_flags(compare.CompareConfig)
    print(compare.run(config, FLAGS.output_dir))
    return 0


if __name__ == "__main__":
    tfnet_flags.run(main)
