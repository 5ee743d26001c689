"""Datasets as train / dev / test splits of ``(features, label)`` examples, and their mini-batches.

Two sources:

- **Embedded 2-D sets** (``moons``, ``circles``, ``flower``) generated deterministically from a
  seed, so that training runs anywhere with no download.
- **Any prepared TFDS image-classification dataset** (``mnist``, ``fashion_mnist``, ``cifar10``,
  the offline ``mnist_t10k`` in ``../shared/tfds``, ...), read with ``download=False`` from
  ``data_dir`` so that nothing probes the network.

The dev split is carved from the training split (TFDS split slicing ``train[:80%]`` /
``train[80%:]`` for ``dev_fraction=0.2``); the test split is the dataset's own test split
(docs/methods.md §1). Features are float32: coordinates for the 2-D sets, raw pixel values in
[0, 255] for images. Normalisation is not applied here: its statistics come from the training
split (``normalization_statistics``) and live inside the model, so that an exported model takes
raw inputs.
"""

import dataclasses
import math
import os
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfnet import data_checks
from tfnet.data_checks import check_examples, check_one_shape

EMBEDDED_DATASETS = ("moons", "circles", "flower")

# What loading raises for bad data; here too, beside the loaders that raise it.
BadDataError = data_checks.BadDataError

# Sizes of the embedded sets: (training examples before the dev split, test examples).
_EMBEDDED_SIZES = {"moons": (1000, 250), "circles": (1000, 250), "flower": (400, 200)}


class DatasetNotFoundError(ValueError):
    """The dataset name is unknown, or its data is not prepared in ``data_dir``."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    input_shape: tuple
    num_train: int
    num_dev: int
    num_test: int


@dataclasses.dataclass(frozen=True)
class Splits:
    """Unbatched ``tf.data.Dataset``s of ``(features float32, label int64)``."""

    train: tf.data.Dataset
    dev: tf.data.Dataset
    test: tf.data.Dataset
    info: DatasetInfo


def make_embedded(name, num_examples=None, seed=0, noise=None):
    """Generates one of the course's 2-D sets.

    - ``moons``: two interleaving half circles (noise σ 0.2 by default);
    - ``circles``: two concentric circles, radii 1 and 0.5 (noise σ 0.08);
    - ``flower``: the course's planar "flower": r = 4 sin(4t) + noise, two classes of petals
      (noise σ 0.2).

    Args:
      name: one of ``EMBEDDED_DATASETS``.
      num_examples: m, the number of examples (default: the training size of the set).
      seed: seed of the generator; the same seed gives the same set on every machine.
      noise: standard deviation of the Gaussian noise (default per set, above).

    Returns:
      ``(x, y)``: float32 array of shape (m, 2) and int64 labels in {0, 1} of shape (m,),
      in random order.
    """
    if name not in EMBEDDED_DATASETS:
        raise DatasetNotFoundError(
            f"name must be one of {', '.join(EMBEDDED_DATASETS)}. Received: name={name!r}"
        )
    m = _EMBEDDED_SIZES[name][0] if num_examples is None else int(num_examples)
    if m < 2:
        raise ValueError(f"num_examples must be at least 2. Received: num_examples={num_examples}")
    rng = np.random.default_rng(seed)
    half = m // 2
    sizes = (half, m - half)
    if name == "moons":
        sigma = 0.2 if noise is None else noise
        t0, t1 = rng.uniform(0, np.pi, sizes[0]), rng.uniform(0, np.pi, sizes[1])
        x0 = np.stack([np.cos(t0), np.sin(t0)], axis=1)
        x1 = np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    elif name == "circles":
        sigma = 0.08 if noise is None else noise
        t0, t1 = rng.uniform(0, 2 * np.pi, sizes[0]), rng.uniform(0, 2 * np.pi, sizes[1])
        x0 = np.stack([np.cos(t0), np.sin(t0)], axis=1)
        x1 = 0.5 * np.stack([np.cos(t1), np.sin(t1)], axis=1)
    else:  # flower
        sigma = 0.2 if noise is None else noise
        petals = []
        for label, size in enumerate(sizes):
            t = np.linspace(label * 3.12, (label + 1) * 3.12, size) + rng.normal(0, sigma, size)
            r = 4 * np.sin(4 * t) + rng.normal(0, sigma, size)
            petals.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        x0, x1 = petals
    x = np.concatenate([x0, x1])
    if name != "flower":  # The flower's noise is already in its angle and radius.
        x = x + rng.normal(0, sigma, (m, 2))
    y = np.concatenate([np.zeros(sizes[0]), np.ones(sizes[1])]).astype(np.int64)
    order = rng.permutation(m)
    return x[order].astype(np.float32), y[order]


def load(name, data_dir=None, dev_fraction=0.2, seed=0, num_examples=0):
    """Loads ``name`` into train / dev / test splits.

    Args:
      name: an embedded set (``EMBEDDED_DATASETS``) or a TFDS dataset prepared in ``data_dir``.
      data_dir: the TFDS data directory (default: TFDS' own, ``~/tensorflow_datasets``).
      dev_fraction: the fraction of the training split held out as dev, in (0, 1). Default 0.2.
      seed: seed of the embedded sets' generator (test set from ``seed + 1``). Default 0.
      num_examples: an embedded set's examples before the dev split (0: its default, 1000 for
        moons and circles, 400 for flower); the test set keeps its size. Default 0.

    Raises:
      DatasetNotFoundError: unknown name or data not prepared, saying what exists and how to get it.
      ValueError: ``dev_fraction`` outside (0, 1), or ``num_examples`` for a TFDS dataset.
    """
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must be in (0, 1). Received: dev_fraction={dev_fraction}")
    if name in EMBEDDED_DATASETS:
        return _load_embedded(name, dev_fraction, seed, num_examples or None)
    if num_examples:
        raise ValueError(f"num_examples must be 0 for a TFDS dataset (it sizes the embedded sets "
                         f"only). Received: num_examples={num_examples}, dataset={name!r}")
    return _load_tfds(name, data_dir, dev_fraction)


def check_available(name, data_dir=None):
    """Raises ``DatasetNotFoundError`` unless ``name`` is embedded or prepared in ``data_dir``.

    Reads only local metadata: nothing is downloaded and the network is never probed.
    """
    if name not in EMBEDDED_DATASETS:
        _tfds_builder(name, data_dir)


def input_shape(name, data_dir=None):
    """The shape of one example of ``name``, from its metadata only (nothing is read or
    downloaded); raises ``DatasetNotFoundError`` as ``check_available`` does."""
    if name in EMBEDDED_DATASETS:
        return (2,)
    builder = _tfds_builder(name, data_dir)
    image_key, _ = builder.info.supervised_keys
    return tuple(builder.info.features[image_key].shape)


def _tfds_builder(name, data_dir):
    import tensorflow_datasets as tfds  # Heavy import, only when a TFDS dataset is asked for.

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DatasetNotFoundError(_not_found_message(name, data_dir, registered=False)) from None
    if not builder.is_prepared():
        raise DatasetNotFoundError(_not_found_message(name, data_dir, registered=True))
    return builder


def _load_embedded(name, dev_fraction, seed, num_examples=None):
    x, y = make_embedded(name, num_examples, seed=seed)
    x_test, y_test = make_embedded(name, num_examples=_EMBEDDED_SIZES[name][1], seed=seed + 1)
    # The dev split is the tail of the training set, as TFDS' train[80%:] slicing would cut it.
    num_train = len(x) - _dev_size(len(x), dev_fraction)
    info = DatasetInfo(name, 2, (2,), num_train, len(x) - num_train, len(x_test))
    return Splits(
        train=tf.data.Dataset.from_tensor_slices((x[:num_train], y[:num_train])),
        dev=tf.data.Dataset.from_tensor_slices((x[num_train:], y[num_train:])),
        test=tf.data.Dataset.from_tensor_slices((x_test, y_test)),
        info=info,
    )


def _dev_size(num_examples, dev_fraction):
    # TFDS rounds percent slice boundaries to the nearest example; so do we.
    return num_examples - int(round(num_examples * (1 - dev_fraction)))


def _load_tfds(name, data_dir, dev_fraction):
    import tensorflow_datasets as tfds

    builder = _tfds_builder(name, data_dir)
    image_key, label_key = builder.info.supervised_keys
    num_classes = builder.info.features[label_key].num_classes
    input_shape = tuple(builder.info.features[image_key].shape)
    if "test" not in builder.info.splits:
        raise DatasetNotFoundError(f"dataset {name!r} has no 'test' split: {list(builder.info.splits)}")

    # Percent slicing keeps the dev examples out of train exactly (TFDS rounds both boundaries
    # the same way); the shuffle of each epoch happens later, in train_batches.
    train_percent = 100 * (1 - dev_fraction)
    split_names = [f"train[:{train_percent:g}%]", f"train[{train_percent:g}%:]", "test"]
    read_config = tfds.ReadConfig(shuffle_seed=0, interleave_cycle_length=1)
    train, dev, test = builder.as_dataset(
        split=split_names, as_supervised=True, shuffle_files=False, read_config=read_config
    )
    sizes = [builder.info.splits[s].num_examples for s in split_names]

    def to_float(image, label):
        return tf.cast(image, tf.float32), tf.cast(label, tf.int64)

    info = DatasetInfo(name, num_classes, input_shape, *sizes)
    return Splits(*(d.map(to_float) for d in (train, dev, test)), info=info)


def _not_found_message(name, data_dir, registered):
    where = data_dir or "TFDS' default data_dir (~/tensorflow_datasets)"
    prepared = _prepared_datasets(data_dir)
    lines = [
        f"dataset {name!r} is "
        + ("a TFDS dataset but its data is not prepared in " if registered else "not a known dataset; looked in ")
        + f"{where}.",
        f"Embedded datasets (no download needed): {', '.join(EMBEDDED_DATASETS)}.",
        f"TFDS datasets prepared in {where}: {', '.join(prepared) or 'none'}.",
        "To get a TFDS dataset, on a machine with internet run "
        f"`tfds build {name} --data_dir=DIR` (or tfds.load({name!r}, data_dir=DIR, download=True)), "
        "copy DIR here and pass --data_dir=DIR.",
    ]
    return " ".join(lines)


def _prepared_datasets(data_dir):
    root = data_dir or os.path.expanduser("~/tensorflow_datasets")
    if not os.path.isdir(root):
        return []
    return sorted(
        entry
        for entry in os.listdir(root)
        if any(os.path.exists(os.path.join(dirpath, "dataset_info.json"))
               for dirpath, _, _ in os.walk(os.path.join(root, entry)))
    )


def normalization_statistics(train, batch_size=1024):
    """Per-feature mean μ and variance σ² of the flattened training features (docs/methods.md §1).

    ``μ = mean(x)``, ``σ² = mean((x − μ)²)`` over the training split only, computed by Keras'
    ``Normalization.adapt`` (a streaming, batch-merged computation). Features whose training
    variance is (near) zero, such as MNIST's always-black border pixels, get a variance floor of
    1e-3 × the largest feature variance, so that a rare non-zero value at serving time is scaled
    like its neighbours instead of being divided by ~0.

    Returns:
      ``(mean, variance)``: float32 numpy arrays with one entry per flattened feature.
    """
    import keras

    adapter = keras.layers.Normalization(axis=-1)
    flat = train.map(lambda x, y: tf.reshape(x, [-1])).batch(batch_size)
    adapter.adapt(flat)
    mean = np.asarray(adapter.mean).reshape(-1)
    variance = np.asarray(adapter.variance).reshape(-1)
    variance = np.maximum(variance, 1e-3 * variance.max()).astype(np.float32)
    return mean.astype(np.float32), variance


class Examples(NamedTuple):
    """A whole split held in memory: ``features`` [m, ...] float32 and ``labels`` [m] int64."""

    features: tf.Tensor
    labels: tf.Tensor


def in_memory(dataset):
    """Reads an unbatched split of ``(features, label)`` into memory as one ``Examples``.

    The training loop cuts every mini-batch from the split held this way, inside its compiled
    call, and evaluation reads a split in one call. A split must fit in memory: 25 MB for
    ``mnist_t10k``'s 6,400 training images, 600 MB for CIFAR-10's 50,000, as float32.
    """
    features, labels = dataset.batch(2**31 - 1).get_single_element()
    return Examples(features, labels)


def in_memory_splits(splits, info):
    """Reads each split into memory (``in_memory``) and checks the data; returns them.

    Args:
      splits: split name -> unbatched split, train first (e.g. "train", "dev", "test").
      info: the dataset's ``DatasetInfo``.

    Returns:
      split name -> ``Examples``.

    Raises:
      BadDataError: a split whose examples differ in shape, or the first bad example that
        ``tfnet.data_checks.check_examples`` finds, named with its split, index and value.
    """
    examples = {name: _in_memory_one_shape(dataset, info.name, name)
                for name, dataset in splits.items()}
    check_examples(info.name, examples, info.num_classes, info.input_shape)
    return examples


def _in_memory_one_shape(dataset, name, split):
    try:
        return in_memory(dataset)
    except tf.errors.InvalidArgumentError:  # examples of several shapes cannot be batched
        check_one_shape(name, split, (tuple(features.shape) for features, _ in dataset))
        raise


# Stateless random numbers with one named algorithm: the integers it draws are the same with
# and without XLA, so an epoch's order does not depend on --jit_compile.
_ALGORITHM = "philox"


def epoch_key(seed, epoch):
    """The random key ``[2]`` (int64) of one epoch's augmentation: a pure function of the run's
    seed and epoch.

    Every random choice of an epoch (its order, ``epoch_orders``; its augmentation) is drawn
    with stateless ops from (seed, epoch), so the data need no state of their own in a
    checkpoint: resuming at epoch e, mini-batch i, reproduces them exactly. Works eagerly and
    inside compiled functions.
    """
    return tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])


def epoch_orders(num_examples, seed, first_epoch, count):
    """The orders of ``count`` epochs from ``first_epoch``: int32 ``[count, m]``, row k that of
    epoch ``first_epoch + k``, each a random permutation of the m training examples.

    Epoch e's examples are sorted by m random keys: 24-bit random integers (as float32, which
    holds them exactly), ties broken by position. The integers are Philox's, keyed by the seed,
    from counter ``e·⌈m/4⌉`` on, so each epoch's keys are a pure function of (seed, epoch), the
    same drawn alone or with other epochs, with and without XLA, while the orders of many epochs
    take one op. Ties are rare (about m²/2²⁵ pairs: 1.2 for 6,400 examples), so the permutation
    is all but uniform.
    """
    counters_per_epoch = -(-num_examples // 4)  # Philox makes four 32-bit numbers per counter
    key = tf.random.experimental.stateless_fold_in(tf.stack([tf.cast(seed, tf.int64), 0]), 0,
                                                   alg=_ALGORITHM)[:1]
    counter = tf.stack([tf.cast(first_epoch, tf.uint64) * counters_per_epoch,
                        tf.constant(0, tf.uint64)])
    bits = tf.raw_ops.StatelessRandomUniformFullIntV2(
        shape=tf.stack([tf.cast(count, tf.int32), 4 * counters_per_epoch]),
        key=tf.cast(key, tf.uint64), counter=counter, alg=1, dtype=tf.int32)  # 1: Philox
    keys = tf.cast(tf.bitwise.right_shift(bits[:, :num_examples], 8), tf.float32)  # exact
    return tf.math.top_k(keys, k=num_examples).indices


def epoch_order(num_examples, seed, epoch):
    """The order of the m training examples in one epoch (``epoch_orders``' row for it)."""
    return epoch_orders(num_examples, seed, epoch, 1)[0]


def augmentation_seed(seed, epoch, batch, replica=0):
    """The seed ``[2]`` of the augmentation of mini-batch ``batch`` (0-based) of ``epoch``.

    Under ``tf.distribute`` each replica augments its own part of the global batch, with
    ``replica`` its index; one device is replica 0.
    """
    key = tf.random.experimental.stateless_fold_in(epoch_key(seed, epoch), 1, alg=_ALGORITHM)
    key = tf.random.experimental.stateless_fold_in(key, tf.cast(batch, tf.int64), alg=_ALGORITHM)
    return tf.random.experimental.stateless_fold_in(key, tf.cast(replica, tf.int64),
                                                    alg=_ALGORITHM)


def batch_indices(order, batch, batch_size, size=None):
    """Positions in the split of mini-batch ``batch`` (0-based) of an epoch in ``order``.

    Mini-batch i holds the examples ``order[i·b : min((i + 1)·b, m)]``: every mini-batch has b
    examples but the last, which has the m − (⌈m/b⌉ − 1)·b left over (docs/methods.md §5).
    ``size`` is that number of examples when the caller knows it as a Python int (XLA needs
    static shapes); by default it is computed. The positions are gathered from a range rather
    than sliced, so that XLA compiles a dynamic ``batch`` once instead of once per value.
    """
    start = tf.cast(batch, tf.int64) * batch_size
    if size is None:
        size = tf.minimum(tf.cast(batch_size, tf.int64), tf.size(order, out_type=tf.int64) - start)
    return tf.gather(order, start + tf.range(size, dtype=tf.int64))


def steps_per_epoch(num_examples, batch_size):
    """Mini-batches per epoch, counting the smaller last one: ⌈m / b⌉."""
    return math.ceil(num_examples / batch_size)
