"""A folder of images, one subfolder per class, read from their files as training goes.

Two layouts, as TFDS' ``ImageFolder`` reads them::

    path/<class>/<image>                       path/train/<class>/<image>
                                               path/test/<class>/<image>

The classes are the subfolders' names in sorted order (the test split must use the training
split's). Images are PNG, JPEG, GIF or BMP files, at any depth inside their class folder, decoded
by TensorFlow to their pixel values (float32 in [0, 255], as TFDS gives them) with the channels
of the first image; they must share one size, or ``image_size`` resizes them (bilinear). An
image is read from its file each time it is used, in parallel threads, so a folder far bigger
than memory can be trained on; where the decoded images fit the memory budget,
``tfnet.data.prepare`` holds them in memory instead.
"""

import os

import numpy as np
import tensorflow as tf

from tfnet.data.splits import Split, splits_from
from tfnet.data_checks import BadDataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp")


class ImageSplit(Split):
    """Images in files (``paths``) with their class numbers (``labels``)."""

    readable = True

    def __init__(self, paths, labels, example_shape, resize, source):
        self.paths = np.asarray(paths, object)
        self.labels = np.asarray(labels, np.int64)
        self.num_examples = len(self.paths)
        self.example_shape = tuple(example_shape)
        self._resize = resize
        self.source = source

    def decode(self, path):
        """One image's pixels, float32 [height, width, channels]; the image must have this
        split's size unless it resizes."""
        height, width, channels = self.example_shape
        image = tf.io.decode_image(tf.io.read_file(path), channels=channels,
                                   expand_animations=False)
        if self._resize:
            return tf.image.resize(tf.cast(image, tf.float32), (height, width))
        tf.debugging.assert_equal(tf.shape(image)[:2], (height, width), message=path)
        image = tf.cast(image, tf.float32)
        image.set_shape(self.example_shape)
        return image

    def read_batches(self, positions, batch_size):
        paths, labels = tf.constant(self.paths.astype(str)), tf.constant(self.labels)

        def read(i):
            return self.decode(tf.gather(paths, i)), tf.gather(labels, i)

        # One image per call, in parallel threads, in order.
        return positions.map(read, num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=True).batch(batch_size)

    def read_rows(self, indices):
        paths = tf.gather(tf.constant(self.paths.astype(str)), indices)
        return tf.map_fn(self.decode, paths, fn_output_signature=tf.float32)

    def subset(self, indices):
        return ImageSplit(self.paths[indices], self.labels[indices], self.example_shape,
                          self._resize, self.source)

    def first_unreadable(self, start, count):
        """The first of the images ``start … start + count − 1`` that cannot be decoded to this
        split's shape: ``(path, reason)``, or None."""
        for path in self.paths[start:start + count]:
            try:
                self.decode(tf.constant(path))
            except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
                return path, error.message.splitlines()[0]
        return None


def load_image_folder(path, dev_fraction, name, image_size=()):
    """``Splits`` of the image folder ``path`` (see the module docstring): ``train/`` and
    ``test/`` where both exist, else the whole folder as training data with a test split held
    out; dev carved from train at random (``tfnet.data.splits.splits_from``).

    Raises:
      BadDataError: fewer than two classes, a class without images, a test class the training
        split lacks, or a first image that cannot be decoded.
    """
    split_dirs = {part: os.path.join(path, part) for part in ("train", "test")}
    if all(os.path.isdir(d) for d in split_dirs.values()):
        train_dir, test_dir = split_dirs["train"], split_dirs["test"]
    else:
        train_dir, test_dir = path, None
    classes = _classes(train_dir)
    train_paths, train_labels = _images(train_dir, classes)
    shape, resize = _example_shape(train_paths[0], image_size)
    train = ImageSplit(train_paths, train_labels, shape, resize, path)
    test = None
    if test_dir is not None:
        unknown = sorted(set(_class_folders(test_dir)) - set(classes))
        if unknown:
            raise BadDataError(f"dataset {path}: the test split's classes must be among the "
                               f"training split's ({', '.join(classes)}). Received: "
                               f"{', '.join(unknown)}")
        test = ImageSplit(*_images(test_dir, classes, required=False), shape, resize, path)
    return splits_from(name, train, test, len(classes), dev_fraction, class_names=classes)


def _class_folders(directory):
    return sorted(entry.name for entry in os.scandir(directory)
                  if entry.is_dir() and not entry.name.startswith("."))


def _classes(directory):
    classes = _class_folders(directory)
    if len(classes) < 2:
        raise BadDataError(f"dataset must be a folder with one subfolder of images per class, "
                           f"at least two. Received: dataset={directory!r} with "
                           f"{len(classes)} subfolder{'s' if len(classes) != 1 else ''}"
                           f"{': ' + classes[0] if classes else ''}")
    return tuple(classes)


def _images(directory, classes, required=True):
    paths, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(
            os.path.join(root, file)
            for root, _, names in os.walk(os.path.join(directory, name))
            for file in names if file.lower().endswith(EXTENSIONS)
        ) if os.path.isdir(os.path.join(directory, name)) else []
        if required and not found:
            raise BadDataError(f"dataset {directory}: class folder {name!r} must hold images "
                               f"({', '.join(EXTENSIONS)}). Received: none")
        paths += found
        labels += [label] * len(found)
    return paths, labels


def _example_shape(first_path, image_size):
    """The examples' shape: the first image's, or ``image_size`` with its channels."""
    try:
        image = tf.io.decode_image(tf.io.read_file(first_path), expand_animations=False)
    except tf.errors.OpError as error:
        raise BadDataError(f"dataset image {first_path} must be a readable PNG, JPEG, GIF or BMP "
                           f"file ({error.message.splitlines()[0]})") from None
    height, width, channels = image.shape
    if image_size:
        return (int(image_size[0]), int(image_size[1]), int(channels)), True
    return (int(height), int(width), int(channels)), False
