"""Checks of a dataset held in memory, before training: one line for the first bad example.

``check_examples`` looks at every split, in the order train, dev, test, for

1. features of another shape than the model's input (or than the training split's, where the
   dataset leaves a dimension unknown);
2. a feature that is not finite (NaN, +inf, -inf): it would make every cost after it NaN;
3. a label outside [0, num_classes): the cross-entropy would gather another class's
   probability, or none, without an error.

and raises ``BadDataError`` for the first problem found, naming the split, the example's index
in it (0-based) and the value. Each check is one vectorised pass of numpy over a split's arrays
(a few milliseconds for MNIST's 10,000 images), and the arrays are those the training loop
reads, so what is checked is what is trained on.
"""

import numpy as np

from tfnet import errors

# What to do about features of several shapes.
_ONE_SHAPE = "Every split must hold examples of one shape; prepare the dataset's splits alike."


class BadDataError(errors.TfnetError, ValueError):
    """The data would train a wrong model: a non-finite feature, a label out of range, or
    features whose shape differs between splits."""


def check_examples(dataset, splits, num_classes, input_shape):
    """Raises ``BadDataError`` for the first bad example of ``splits``, else returns None.

    Args:
      dataset: the dataset's name, for the message.
      splits: split name -> ``(features [m, ...], labels [m])``, arrays or eager tensors, in the
        order they are checked (train first: the others are compared with it).
      num_classes: the number of classes; labels must be in [0, num_classes).
      input_shape: the shape of one example's features the model is built for; None for a
        dimension the dataset leaves unknown.
    """
    arrays = {name: (np.asarray(x), np.asarray(y)) for name, (x, y) in splits.items()}
    check_shapes(dataset, {name: x.shape[1:] for name, (x, _) in arrays.items()}, input_shape)
    for name, (features, labels) in arrays.items():
        check_chunk(dataset, name, 0, features, labels, num_classes)


def check_shapes(dataset, shapes, input_shape):
    """Raises ``BadDataError`` when a split's examples (``shapes``: split name -> the shape of
    one example, train first) differ from the model's ``input_shape`` or from the first
    split's."""
    if not shapes:
        return
    first = next(iter(shapes))
    for name, shape in shapes.items():
        _check_shape(dataset, name, tuple(shape), input_shape, first, tuple(shapes[first]))


def check_chunk(dataset, split, start, features, labels, num_classes):
    """Raises ``BadDataError`` for the first non-finite feature or label outside
    [0, num_classes) of examples ``start, start + 1, ...`` of ``split`` (numpy arrays): the
    check of a split read chunk by chunk."""
    _check_finite(dataset, split, features, start)
    _check_labels(dataset, split, labels, num_classes, start)


def check_one_shape(dataset, split, shapes):
    """Raises ``BadDataError`` at the first of ``shapes`` (one per example of ``split``, in
    order) that differs from the first."""
    shapes = iter(shapes)
    first = next(shapes, None)
    for index, shape in enumerate(shapes, start=1):
        if shape != first:
            _fail(dataset, split, index, f"features of another shape than example 0's {first}",
                  shape, _ONE_SHAPE)


def _fail(dataset, split, index, problem, value, advice):
    raise BadDataError(f"dataset {dataset}, split {split}, example {index}: {problem}, {value}. "
                       f"{advice}")


def _check_shape(dataset, split, shape, input_shape, first, first_shape):
    declared = tuple(input_shape)
    fits = len(shape) == len(declared) and all(
        d is None or d == s for d, s in zip(declared, shape))
    if fits and tuple(shape) == tuple(first_shape):
        return
    expected = (f"split {first}'s {tuple(first_shape)}" if fits
                else f"the model's input {declared}")
    _fail(dataset, split, 0, f"features of another shape than {expected}", tuple(shape),
          _ONE_SHAPE)


def _check_finite(dataset, split, features, start=0):
    if not np.issubdtype(features.dtype, np.floating) or not len(features):
        return  # integers (e.g. raw pixels) are finite
    finite = np.isfinite(features.reshape(len(features), -1))
    bad = np.flatnonzero(~finite.all(axis=1))
    if bad.size:
        index = int(bad[0])
        position = int(np.flatnonzero(~finite[index])[0])
        where = np.unravel_index(position, features.shape[1:])
        feature = ", ".join(str(int(i)) for i in where)
        _fail(dataset, split, start + index, f"feature [{feature}] is not finite",
              features[index][where],
              "Repair or drop the example: one non-finite input makes every cost after it NaN.")


def _check_labels(dataset, split, labels, num_classes, start=0):
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        index = int(bad[0])
        _fail(dataset, split, start + index, f"label outside [0, {num_classes})", labels[index],
              "Relabel or drop the example (TFDS writes -1 for an unlabelled one), or declare "
              "the dataset's number of classes.")
