"""tfnet.data_checks: the first bad example of a dataset in memory, named by split, index, value."""

import numpy as np
import pytest
import tensorflow as tf

from tfnet import data
from tfnet.data_checks import BadDataError, check_examples


def _images(m=6, num_classes=10):
    """m 4×4×1 "images" with labels 0..m-1 (mod num_classes)."""
    return np.zeros((m, 4, 4, 1), np.float32), np.arange(m, dtype=np.int64) % num_classes


def test_clean_splits_pass_and_integer_features_are_not_checked_for_finiteness():
    x, y = _images()
    check_examples("images", {"train": (x, y), "dev": (x[:2], y[:2]), "test": (x, y)}, 10,
                   (4, 4, 1))
    check_examples("pixels", {"train": (x.astype(np.uint8), y)}, 10, (4, 4, 1))
    check_examples("empty dev", {"train": (x, y), "dev": (x[:0], y[:0])}, 10, (4, 4, 1))


def test_a_non_finite_pixel_is_named_by_its_example_and_position():
    x, y = _images()
    x[4, 2, 3, 0] = -np.inf
    x[5, 0, 0, 0] = np.nan  # a later example: the first one is reported
    with pytest.raises(BadDataError, match=r"^dataset images, split dev, example 4: feature "
                       r"\[2, 3, 0\] is not finite, -inf\. Repair or drop the example"):
        check_examples("images", {"train": _images(), "dev": (x, y)}, 10, (4, 4, 1))


@pytest.mark.parametrize("label", [-1, 10, 255])
def test_labels_outside_the_classes_are_named(label):
    x, y = _images()
    y[3] = label
    with pytest.raises(BadDataError, match=rf"^dataset images, split train, example 3: label "
                       rf"outside \[0, 10\), {label}\. Relabel or drop the example"):
        check_examples("images", {"train": (x, y)}, 10, (4, 4, 1))


def test_shapes_are_checked_before_values():
    x, y = _images()
    y[0] = -1
    with pytest.raises(BadDataError, match=r"^dataset images, split train, example 0: features "
                       r"of another shape than the model's input \(28, 28, 1\), \(4, 4, 1\)\."):
        check_examples("images", {"train": (x, y)}, 10, (28, 28, 1))


def test_a_split_of_another_shape_than_train_is_named_where_the_dataset_leaves_it_open():
    x, y = _images()
    wide = np.zeros((3, 4, 5, 1), np.float32), y[:3]
    with pytest.raises(BadDataError, match=r"^dataset images, split test, example 0: features of "
                       r"another shape than split train's \(4, 4, 1\), \(4, 5, 1\)\. Every split"):
        check_examples("images", {"train": (x, y), "test": wide}, 10, (None, None, 1))


def test_examples_of_several_shapes_within_a_split_are_named_when_read_into_memory(tmp_path):
    def examples():
        for i in range(5):
            yield np.zeros(3 if i == 3 else 2, np.float32), np.int64(0)

    # A pipeline that declares one shape and yields another: found when read, named.
    split = tf.data.Dataset.from_generator(examples, output_signature=(
        tf.TensorSpec([2], tf.float32), tf.TensorSpec([], tf.int64)))
    with pytest.raises(BadDataError, match=r"^dataset ragged, split test, example 3: cannot be "
                       r"read \(.*yielded an element of shape \(3,\) where an element of shape "
                       r"\(2,\) was expected"):
        data.from_datasets(split.take(2), test=split, dev=split.take(2), name="ragged")
