"""Input pipeline vs training step: examples per second, with and without augmentation.

    python scripts/bench_input.py --data_dir=../shared/tfds

Times, in one process and alternating the contenders, the default MLP's compiled training step
and the input pipeline alone -- tfnet.data.train_batches itself, without and with augmentation,
over the cached training split, one full epoch per round after an untimed epoch that fills the
cache -- on mnist_t10k and on a synthetic CIFAR-sized set (10,000 x 32x32x3), and prints each
rate and its median ratio to the training step's rate. The goal: the pipeline with augmentation
delivers at least 5x what the step consumes.
"""

import sys

from absl import app, flags

from tfnet import flags as tfnet_flags

# --data_dir (holding mnist_t10k), --batch_size, --hidden_units and --seed, shared with
# scripts/train.py, with its defaults: the default MLP (64,32) at the default batch size.
tfnet_flags.define_train_flags(names=("data_dir", "batch_size", "hidden_units", "seed"))
flags.DEFINE_integer("repeats", 5, "Timed rounds; each runs every contender once.", lower_bound=1)
flags.DEFINE_string("mnist_augment", "crop,rotate", "Augmentations on mnist_t10k (no flip: "
                    "a mirrored digit is another symbol).")
flags.DEFINE_string("cifar_augment", "flip,crop,brightness,contrast",
                    "Augmentations on the synthetic CIFAR-sized set.")
flags.DEFINE_integer("cifar_examples", 10_000, "Examples in the synthetic CIFAR-sized set.",
                     lower_bound=1)
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from tfnet import data, input_bench  # TensorFlow loads only after the flags parse.

    hidden_units = tuple(int(units) for units in FLAGS.hidden_units)
    common = dict(batch_size=FLAGS.batch_size, hidden_units=hidden_units, repeats=FLAGS.repeats,
                  seed=FLAGS.seed)
    mnist = data.load("mnist_t10k", data_dir=FLAGS.data_dir)
    cifar_info = data.DatasetInfo("synthetic_cifar", 10, (32, 32, 3), FLAGS.cifar_examples, 0, 0)
    rates = input_bench.measure("mnist_t10k", mnist.train, mnist.info, FLAGS.mnist_augment,
                                **common)
    rates += input_bench.measure(
        "synthetic_cifar", input_bench.synthetic_images(FLAGS.cifar_examples), cifar_info,
        FLAGS.cifar_augment, **common,
    )
    print(input_bench.format_table(rates))
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
