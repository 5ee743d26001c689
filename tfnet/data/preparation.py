"""Placing each split in memory or on disk, checking the data, and the normalisation statistics.

``prepare`` decides, split by split in the order train, dev, test, where the examples live
during training: in memory (``Examples``, float32, gathered by the compiled training loop) while
the splits placed so far fit ``memory_budget`` bytes, otherwise streamed (read by position from
their files as training goes, ``tfnet.data.stream``). A training split that is too big and can
only be read in order (a TFDS dataset, a user's ``tf.data`` pipeline) is first copied to
``cache_dir`` as arrays that can be read by position (``tfnet.data.files.write_copy``). The run
says where each split went in one line (``PreparedData.summary``).

Before anything is trained, every split is checked (``tfnet.data_checks``: the shape of its
examples, non-finite features, labels out of range, images that cannot be decoded) and the
training split's per-feature mean and variance are computed (``normalization_statistics``):
one pass over each split.
"""

import dataclasses
import os
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfnet import data_checks
from tfnet.data import files
from tfnet.data.splits import CHUNK, DatasetSplit, Split

# The budget of --memory_budget_mb=0: this share of the machine's physical memory.
AUTOMATIC_BUDGET_SHARE = 0.25


class Examples(NamedTuple):
    """A whole split held in memory: ``features`` [m, ...] float32 and ``labels`` [m] int64."""

    features: tf.Tensor
    labels: tf.Tensor


@dataclasses.dataclass
class PreparedData:
    """The splits where training reads them, and the dataset's info with its statistics.

    Attributes:
      info: the ``DatasetInfo``, ``mean`` and ``variance`` filled in.
      splits: "train", "dev", "test" -> ``Examples`` (in memory) or a ``Split`` (streamed).
      summary: one line: where each split is, and the budget.
    """

    info: object
    splits: dict
    summary: str

    def in_memory(self, name):
        return isinstance(self.splits[name], Examples)


def in_memory(split):
    """Every example of ``split`` read into memory, as ``Examples`` (float32 features, int64
    labels)."""
    return Examples(*(tf.constant(a) for a in files.to_arrays(split)))


def automatic_budget():
    """``AUTOMATIC_BUDGET_SHARE`` of the machine's physical memory, in bytes."""
    return int(AUTOMATIC_BUDGET_SHARE * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def prepare(splits, memory_budget, cache_dir, statistics=True):
    """Places, checks and summarises ``splits`` (a ``tfnet.data.Splits``); see the module.

    Args:
      splits: the dataset's splits.
      memory_budget: bytes of float32 features that may be held in memory; 0: automatic.
      cache_dir: where a streamed training split that can only be read in order is copied.
      statistics: compute the training split's mean and variance. Default True.

    Raises:
      BadDataError: the first bad example, named by split, index (or file) and value.
    """
    budget = memory_budget or automatic_budget()
    left, placed = budget, {}
    for name, split in splits.items():
        if split.nbytes <= left:
            placed[name] = _in_memory_one_shape(split, splits.info.name, name)
            left -= split.nbytes
        elif name == "train" and not split.readable:
            placed[name] = files.write_copy(split, os.path.join(cache_dir, _copy_key(split)))
        else:
            placed[name] = split
    info = splits.info
    _check(info, placed)
    if statistics:
        train = placed["train"]
        batches = (tf.data.Dataset.from_tensor_slices(tuple(train)).batch(CHUNK)
                   if isinstance(train, Examples) else train.batches(CHUNK))
        mean, variance = normalization_statistics(batches)
        info = dataclasses.replace(info, mean=mean, variance=variance)
    return PreparedData(info, placed, _summary(splits, placed, budget))


def _in_memory_one_shape(split, dataset, name):
    """``in_memory(split)``; a pipeline whose examples differ in shape is named at the first odd
    one (``data_checks.check_one_shape``)."""
    try:
        return in_memory(split)
    except tf.errors.OpError as error:  # examples of several shapes, a file that cannot be read
        if isinstance(split, DatasetSplit):
            data_checks.check_one_shape(dataset, name, shapes(split.dataset, dataset, name))
        _name_unreadable(split, dataset, name, 0, split.num_examples, error)
        raise


def shapes(examples, dataset, name):
    """The shape of each example of a ``tf.data`` pipeline, one by one; one that cannot be read
    (e.g. a generator yielding another shape than it declares) is named."""
    iterator = iter(examples)
    for index in range(2**62):
        try:
            features, _ = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as error:
            raise data_checks.BadDataError(
                f"dataset {dataset}, split {name}, example {index}: cannot be read "
                f"({error.message.splitlines()[0]})") from None
        yield tuple(features.shape)


def _copy_key(split):
    identity = getattr(split, "identity", None)
    return files.cache_key("split", identity) if identity else files.cache_key("run", os.getpid(), id(split))


def _check(info, placed):
    """``data_checks`` over every split: arrays in memory at once, streamed ones batch by batch."""
    in_memory = {name: tuple(s) for name, s in placed.items() if isinstance(s, Examples)}
    shapes = {name: tuple(s.features.shape[1:]) if isinstance(s, Examples) else s.example_shape
              for name, s in placed.items()}
    data_checks.check_shapes(info.name, shapes, info.input_shape)
    data_checks.check_examples(info.name, in_memory, info.num_classes, info.input_shape)
    for name, split in placed.items():
        if isinstance(split, Split):
            _check_streamed(info, name, split)


def _check_streamed(info, name, split):
    start = 0
    iterator = split.batches(CHUNK).prefetch(2).as_numpy_iterator()
    while True:
        try:
            features, labels = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as error:  # an image that cannot be decoded, or of another size
            _name_unreadable(split, info.name, name, start, CHUNK, error)
            raise
        data_checks.check_chunk(info.name, name, start, features, labels, info.num_classes)
        start += len(labels)


def _name_unreadable(split, dataset, name, start, count, error):
    """Raises ``BadDataError`` naming the first file of examples ``start … start + count − 1``
    of an image split that cannot be decoded to the split's shape; returns for other splits."""
    if not hasattr(split, "first_unreadable"):
        return
    for first in range(start, min(start + count, split.num_examples), CHUNK):
        found = split.first_unreadable(first, CHUNK)
        if found:
            path, reason = found
            raise data_checks.BadDataError(
                f"dataset {dataset}, split {name}: {path} must be an image of shape "
                f"{split.example_shape} ({reason.splitlines()[0]})") from None
    raise data_checks.BadDataError(f"dataset {dataset}, split {name}: examples {start}.."
                                   f"{start + count - 1} cannot be read ({error.message.splitlines()[0]})")


def _summary(splits, placed, budget):
    parts = []
    for name, split in splits.items():
        where = "in memory" if isinstance(placed[name], Examples) else (
            f"streamed from {placed[name].source}")
        parts.append(f"{name} {split.num_examples:,} x {split.example_shape} {where}")
    held = sum(s.nbytes for n, s in splits.items() if isinstance(placed[n], Examples))
    return (f"data: {'; '.join(parts)} ({_mb(held)} held of a {_mb(budget)} memory budget)")


def _mb(nbytes):
    return f"{nbytes / 2**20:,.0f} MB" if nbytes >= 2**20 else f"{nbytes / 2**10:,.0f} KB"


def normalization_statistics(batches):
    """Per-feature mean μ and variance σ² of the flattened training features (docs/methods.md §1).

    ``μ = mean(x)``, ``σ² = mean((x − μ)²)`` over the training split only, computed by Keras'
    ``Normalization.adapt`` from ``batches`` (a dataset of ``(features, labels)`` batches; a
    streaming, batch-merged computation, so the split need not fit in memory). Features whose
    training variance is (near) zero, such as MNIST's always-black border pixels, get a variance
    floor of 1e-3 × the largest feature variance, so that a rare non-zero value at serving time
    is scaled like its neighbours instead of being divided by ~0.

    Returns:
      ``(mean, variance)``: float32 numpy arrays with one entry per flattened feature.
    """
    import keras

    adapter = keras.layers.Normalization(axis=-1)
    width = int(np.prod(batches.element_spec[0].shape[1:], dtype=np.int64))
    adapter.adapt(batches.map(lambda x, y: tf.reshape(x, [-1, width])))
    mean = np.asarray(adapter.mean).reshape(-1)
    variance = np.asarray(adapter.variance).reshape(-1)
    variance = np.maximum(variance, 1e-3 * variance.max()).astype(np.float32)
    return mean.astype(np.float32), variance
