"""A dataset as train / dev / test splits, each readable in order and, where its source allows,
by position.

A ``Split`` is m examples ``(features float32 of shape example_shape, label int64)``. Every
split can be read in order, in batches (``batches``: evaluation, statistics, checks, copies).
A *readable* split can also be read at any positions (``read_batches``), which is what training
needs to draw each epoch's order: arrays in memory (``ArraySplit``), arrays in a file read by
position (``tfnet.data.files.FileSplit``), images in files (``tfnet.data.images.ImageSplit``),
and any subset of those (``Subset``). A split that can only be read in order
(``DatasetSplit``: a TFDS dataset, a user's ``tf.data.Dataset``) is copied into memory or to
disk before training (``tfnet.data.prepare``).
"""

import dataclasses

import numpy as np
import tensorflow as tf

# Examples read per batch when a split is read in order (evaluation, statistics, copies).
CHUNK = 1024


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model and a run need to know of a dataset.

    Attributes:
      name: the dataset's short name (run directories, exports).
      num_classes: C; labels are in [0, C).
      input_shape: the shape of one example's features, e.g. (2,), (28, 28, 1) or (d,).
      num_train, num_dev, num_test: examples in each split.
      class_names: the name of each class, where the source names them (CSV labels, image
        folders); empty otherwise.
      notes: what loading decided that the user should be told (a held-out test split, ...).
      mean, variance: the per-feature statistics of the flattened training features, for a
        normalisation layer (``tfnet.data.prepare`` fills them in; None before).
    """

    name: str
    num_classes: int
    input_shape: tuple
    num_train: int
    num_dev: int
    num_test: int
    class_names: tuple = ()
    notes: tuple = ()
    mean: np.ndarray = dataclasses.field(default=None, compare=False, repr=False)
    variance: np.ndarray = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def is_image(self):
        """Whether examples are images (height, width, channels)."""
        return len(self.input_shape) == 3


@dataclasses.dataclass(frozen=True)
class Splits:
    """The three splits of a dataset and what it is (``train``, ``dev``, ``test`` are ``Split``s)."""

    train: "Split"
    dev: "Split"
    test: "Split"
    info: DatasetInfo

    def items(self):
        return (("train", self.train), ("dev", self.dev), ("test", self.test))


class Split:
    """m examples of one shape; see the module docstring.

    Subclasses set ``num_examples`` and ``example_shape`` and implement ``batches``; readable
    ones also set ``labels`` (int64 numpy array, all m of them: labels are small) and implement
    ``read_rows``.
    """

    num_examples: int
    example_shape: tuple
    labels: np.ndarray = None
    readable = False
    source = "memory"  # where the features are: "memory", or a path ("streamed from ...")

    @property
    def nbytes(self):
        """The features' size as float32 in memory; 0 where the shape leaves a dimension unknown
        (a TFDS feature of varying size: such a split is read into memory, as it cannot be
        streamed in mini-batches of one shape)."""
        if any(d is None for d in self.example_shape):
            return 0
        return 4 * self.num_examples * int(np.prod(self.example_shape, dtype=np.int64))

    def batches(self, batch_size=CHUNK):
        """An unshuffled ``tf.data.Dataset`` of ``(features [k, ...], labels [k])`` batches of
        ``batch_size`` (the last smaller), in the split's order."""
        positions = tf.data.Dataset.range(self.num_examples)
        return bounded(self.read_batches(positions, batch_size))

    def read_batches(self, positions, batch_size):
        """``positions`` (a dataset of int64 scalars) read in batches of ``batch_size``: a
        dataset of ``(features, labels)``. Readable splits only."""
        labels = tf.constant(self.labels)

        def read(indices):
            return self.read_rows(indices), tf.gather(labels, indices)

        return positions.batch(batch_size).map(read, num_parallel_calls=2, deterministic=True)

    def read_rows(self, indices):
        """The features of the examples at ``indices`` (int64 [k]), float32 [k, ...]; graph code,
        run by tf.data."""
        raise NotImplementedError(f"{type(self).__name__} cannot be read by position")

    def subset(self, indices):
        """The examples at ``indices`` (sorted numpy int64), as a split."""
        return Subset(self, indices)


class ArraySplit(Split):
    """Examples held as numpy arrays (or ``np.memmap``s, read by position)."""

    readable = True
    source = "arrays"

    def __init__(self, features, labels):
        self.features = features
        self.labels = np.asarray(labels, np.int64)
        self.num_examples = len(self.labels)
        self.example_shape = tuple(features.shape[1:])

    def batches(self, batch_size=CHUNK):
        if isinstance(self.features, np.memmap):
            return super().batches(batch_size)
        return tf.data.Dataset.from_tensor_slices(
            (self.features.astype(np.float32, copy=False), self.labels)).batch(batch_size)

    def read_rows(self, indices):
        def read(positions):
            return np.asarray(self.features[positions], np.float32)

        rows = tf.numpy_function(read, [indices], tf.float32, stateful=False)
        return tf.ensure_shape(rows, (None, *self.example_shape))

    def subset(self, indices):
        if isinstance(self.features, np.memmap):
            return Subset(self, indices)
        return ArraySplit(self.features[indices], self.labels[indices])


class Subset(Split):
    """The examples of a readable split at given positions, in their order."""

    readable = True

    def __init__(self, base, indices):
        if not base.readable:
            raise TypeError(f"{type(base).__name__} cannot be read by position")
        self.base = base
        self.indices = np.asarray(indices, np.int64)
        self.labels = base.labels[self.indices]
        self.num_examples = len(self.indices)
        self.example_shape = base.example_shape
        self.source = base.source

    def read_batches(self, positions, batch_size):
        indices = tf.constant(self.indices)
        return self.base.read_batches(positions.map(lambda i: tf.gather(indices, i)), batch_size)

    def read_rows(self, indices):
        return self.base.read_rows(tf.gather(tf.constant(self.indices), indices))

    def subset(self, indices):
        return Subset(self.base, self.indices[indices])  # one level: positions in the base


class DatasetSplit(Split):
    """Examples from an unbatched ``tf.data.Dataset`` of ``(features, label)``, readable only in
    order (a TFDS split, a user's pipeline)."""

    def __init__(self, dataset, num_examples, example_shape, source="tf.data"):
        self.dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), tf.cast(y, tf.int64)))
        self.num_examples = int(num_examples)
        self.example_shape = tuple(example_shape)
        self.source = source

    def batches(self, batch_size=CHUNK):
        return self.dataset.batch(batch_size)


def bounded(dataset):
    """``dataset`` with tf.data's automatic buffering off: the buffers a pipeline of tfnet's
    sets itself are the only ones, so reading a split bigger than memory takes memory for a few
    batches, not for an autotuned share of the machine's."""
    options = tf.data.Options()
    options.experimental_optimization.inject_prefetch = False
    options.autotune.enabled = False
    return dataset.with_options(options)


def carve(split, fraction, seed=0):
    """Splits a readable ``split`` in two at random: ``(rest, held_out)``, ``held_out`` holding
    ``round(m · fraction)`` examples drawn with numpy's generator seeded by ``seed`` (fixed, so
    the dev and test sets do not change with the run's seed), both kept in the original order."""
    m = split.num_examples
    held = int(round(m * fraction))
    chosen = np.random.default_rng(seed).permutation(m)[:held]
    mask = np.zeros(m, bool)
    mask[chosen] = True
    return split.subset(np.flatnonzero(~mask)), split.subset(np.flatnonzero(mask))


def splits_from(name, train, test, num_classes, dev_fraction, class_names=()):
    """``Splits`` from a readable training split and a test split, or None.

    The dev set is ``dev_fraction`` of ``train`` (``carve``). Without a test split, one is held
    out first, and both dev and test are then ``dev_fraction`` of the whole data (0.2: the
    course's 60/20/20); ``info.notes`` says so.
    """
    notes = []
    dev_share = dev_fraction
    if test is None:
        if not dev_fraction < 0.5:
            raise ValueError(f"dev_fraction must be < 0.5 for a dataset without a test split "
                             f"(dev and test each take that fraction). Received: "
                             f"dev_fraction={dev_fraction}")
        train, test = carve(train, dev_fraction, seed=1)
        dev_share = dev_fraction / (1 - dev_fraction)
        notes.append(f"no test split given: {test.num_examples} examples ({dev_fraction:.0%}) "
                     "of the data are held out as the test set")
    train, dev = carve(train, dev_share, seed=0)
    info = DatasetInfo(name, int(num_classes), train.example_shape, train.num_examples,
                       dev.num_examples, test.num_examples, tuple(class_names), tuple(notes))
    return Splits(train, dev, test, info)
