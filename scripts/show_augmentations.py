"""Writes a grid of training images and augmented versions of them, as a PNG and to TensorBoard.

    python scripts/show_augmentations.py --data_dir=../shared/tfds --augment=crop,rotate,zoom
    tensorboard --logdir runs/augmentations

Row i: training image i, then --num_versions augmentations of it (first column: the originals).
"""

import os
import sys

from absl import app, flags

from tfnet import flags as tfnet_flags

# --data_dir and --seed, shared with scripts/train.py.
tfnet_flags.define_train_flags(names=("data_dir", "seed"))
flags.DEFINE_string("dataset", "mnist_t10k", "An image dataset prepared in --data_dir.")
flags.DEFINE_list("augment", ["crop", "rotate", "zoom"],
                  "Augmentations to show (tfnet.augment.NAMES); see scripts/train.py --helpfull.")
flags.DEFINE_integer("num_images", 6, "Training images, one per row.", lower_bound=1)
flags.DEFINE_integer("num_versions", 5, "Augmented versions of each image.", lower_bound=1)
flags.DEFINE_string("output_dir", "runs/augmentations",
                    "Where augmentations.png and the TensorBoard event file go.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from tfnet import augment, augment_preview, data  # TensorFlow loads after the flags parse.

    try:
        splits = data.load(FLAGS.dataset, data_dir=FLAGS.data_dir)
    except data.DatasetNotFoundError as error:
        print(f"--dataset={FLAGS.dataset}: {error}", file=sys.stderr)
        return 1
    try:
        augment_fn = augment.build(FLAGS.augment, splits.info.input_shape)
    except ValueError as error:
        print(f"--augment={','.join(FLAGS.augment)}: {error}", file=sys.stderr)
        return 1
    if augment_fn is None:
        print("--augment must name at least one augmentation", file=sys.stderr)
        return 1
    images, _ = splits.train.batches(FLAGS.num_images).take(1).get_single_element()
    versions = augment_preview.augmented_versions(images, augment_fn, FLAGS.num_versions,
                                                  FLAGS.seed)
    title = f"{FLAGS.dataset}: {', '.join(FLAGS.augment)} (seed {FLAGS.seed})"
    png = augment_preview.write_png(versions, os.path.join(FLAGS.output_dir, "augmentations.png"),
                                    title)
    augment_preview.write_tensorboard(versions, FLAGS.output_dir, description=title)
    print(f"PNG: {png}")
    print(f"TensorBoard: tensorboard --logdir {FLAGS.output_dir}")
    return 0


if __name__ == "__main__":
    tfnet_flags.run(main)
