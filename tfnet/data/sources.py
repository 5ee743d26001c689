"""Every way to give tfnet data, each returning ``Splits``: by name or path (``load``), or from a
user's arrays (``from_arrays``) or ``tf.data`` pipelines (``from_datasets``)."""

import os

import numpy as np
import tensorflow as tf

from tfnet.data import embedded, files, images, tables, tfds_source
from tfnet.data.splits import ArraySplit, DatasetInfo, DatasetSplit, Splits, splits_from
from tfnet import data_checks
from tfnet.data_checks import BadDataError

DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "tfnet")


def is_path(dataset):
    """Whether ``dataset`` names a file or folder (a path) rather than a dataset by name."""
    return os.sep in dataset or "/" in dataset or dataset.endswith((".npz", ".csv")) or (
        os.path.exists(dataset) and dataset not in embedded.EMBEDDED_DATASETS)


def load(name, data_dir=None, dev_fraction=0.2, seed=0, num_examples=0, label_column="label",
         image_size=(), memory_budget=None, cache_dir=None):
    """The ``Splits`` of a dataset named by ``name``.

    Args:
      name: an embedded set (``moons``, ``circles``, ``flower``), a TFDS dataset prepared in
        ``data_dir``, or the path of a ``.npz`` file, a ``.csv`` file or a folder of images.
      data_dir: the TFDS data directory (default: TFDS' own, ``~/tensorflow_datasets``).
      dev_fraction: the fraction of the training split held out as dev, in (0, 1). Default 0.2.
      seed: seed of the embedded sets' generator (test set from ``seed + 1``). Default 0.
      num_examples: an embedded set's examples before the dev split (0: its default).
      label_column: a CSV's label column. Default "label".
      image_size: an image folder's (height, width) to resize to; empty: as stored.
      memory_budget: bytes a CSV's features may take in memory before they are copied to
        ``cache_dir`` instead. Default: automatic (``tfnet.data.preparation.automatic_budget``).
      cache_dir: where such copies go. Default ``~/.cache/tfnet``.

    Raises:
      DatasetNotFoundError: unknown name, a path that does not exist, or TFDS data not
        prepared; saying what exists and how to get it.
      BadDataError: a file that cannot be read as what it claims to be.
      ValueError: ``dev_fraction`` outside (0, 1), or ``num_examples`` for another dataset.
    """
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must be in (0, 1). Received: dev_fraction={dev_fraction}")
    if num_examples and name not in embedded.EMBEDDED_DATASETS:
        raise ValueError(f"num_examples must be 0 for the dataset {name} (it sizes the embedded "
                         f"sets only). Received: num_examples={num_examples}")
    if name in embedded.EMBEDDED_DATASETS:
        return embedded.load_embedded(name, dev_fraction, seed, num_examples or None)
    if not is_path(name):
        return tfds_source.load_tfds(name, data_dir, dev_fraction)
    check_path(name)
    short = os.path.splitext(os.path.basename(os.path.normpath(name)))[0]
    if os.path.isdir(name):
        return images.load_image_folder(name, dev_fraction, short, image_size)
    if name.endswith(".npz"):
        return files.load_npz(name, dev_fraction, short)
    from tfnet.data import preparation  # the automatic budget

    cache = os.path.expanduser(cache_dir or DEFAULT_CACHE_DIR)
    return tables.load_csv(name, label_column, dev_fraction, short,
                           memory_budget or preparation.automatic_budget(), cache)


def check_path(path):
    """Raises ``DatasetNotFoundError`` unless ``path`` is a ``.npz`` or ``.csv`` file or a
    folder (reads nothing else)."""
    if os.path.isdir(path) or (os.path.isfile(path) and path.endswith((".npz", ".csv"))):
        return
    what = "does not exist" if not os.path.exists(path) else "is not a .npz file, a .csv file or a folder"
    raise tfds_source.DatasetNotFoundError(
        f"dataset must be an embedded set ({', '.join(embedded.EMBEDDED_DATASETS)}), a TFDS "
        f"dataset prepared in --data_dir, or the path of a .npz file, a .csv file or a folder "
        f"of images. Received: dataset={path!r}, which {what}")


def from_arrays(x, y, x_test=None, y_test=None, dev_fraction=0.2, name="arrays",
                num_classes=None, class_names=()):
    """``Splits`` of numpy arrays (or ``np.memmap``s): features ``x`` [m, ...] and integer
    labels ``y`` [m], and optionally a test split. Dev is carved from the training examples at
    random; without a test split one of the same size is held out too
    (``tfnet.data.splits.splits_from``). C is ``num_classes``, else the largest label + 1."""
    train = ArraySplit(_features(x, "x"), _labels(y, "y", len(x)))
    test = None
    if (x_test is None) != (y_test is None):
        raise ValueError("x_test and y_test must be given together. Received: only "
                         + ("x_test" if y_test is None else "y_test"))
    if x_test is not None:
        test = ArraySplit(_features(x_test, "x_test"), _labels(y_test, "y_test", len(x_test)))
    if num_classes is None:
        num_classes = int(max(train.labels.max(initial=0),
                              test.labels.max(initial=0) if test else 0)) + 1
    return splits_from(name, train, test, num_classes, dev_fraction, class_names)


def _features(x, name):
    x = x if isinstance(x, np.memmap) else np.asarray(x)
    if x.ndim < 2 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{name} must be a numeric array of shape (m, ...). Received: {name} "
                         f"of shape {x.shape} and dtype {x.dtype}")
    return x


def _labels(y, name, m):
    y = np.asarray(y).reshape(len(y), -1) if np.ndim(y) > 1 else np.asarray(y)
    if y.ndim > 1 and y.shape[1] != 1 or len(y) != m:
        raise ValueError(f"{name} must hold one integer label per example ({m}). Received: "
                         f"{name} of shape {np.shape(y)}")
    y = y.reshape(-1)
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels. Received: {name} of dtype "
                         f"{y.dtype}")
    return y


def from_datasets(train, test=None, dev=None, num_classes=None, name="data", dev_fraction=0.2):
    """``Splits`` of ``tf.data.Dataset``s of single ``(features, label)`` examples.

    Such splits can only be read in order: dev is the tail of ``train`` when not given (as
    TFDS' ``train[80%:]`` cuts it; shuffle ``train`` first if its order is not random), and
    without ``test`` a test split of the same size is its tail before that. Their sizes (and C,
    the largest label + 1, unless ``num_classes`` is given) take one pass over the data.
    """
    spec = train.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2 and spec[0].shape.is_fully_defined()):
        raise ValueError("train must be a tf.data.Dataset of single (features, label) examples "
                         f"whose features have a fixed shape. Received: element_spec={spec}")
    shape = tuple(spec[0].shape)
    counts = {part: _count(d, num_classes is None, name, part) for part, d in
              (("train", train), ("dev", dev), ("test", test)) if d is not None}
    if num_classes is None:
        num_classes = max(top for _, top in counts.values()) + 1
    m = counts["train"][0]
    notes, parts = [], {}
    held = int(round(m * dev_fraction))
    if test is None:
        parts["test"] = train.skip(m - held)
        notes.append(f"no test split given: the last {held} examples of train are held out as "
                     "the test set")
        train, m = train.take(m - held), m - held
    if dev is None:
        dev_size = held
        parts["dev"] = train.skip(m - dev_size)
        train, m = train.take(m - dev_size), m - dev_size
    sizes = {"train": m, "dev": counts["dev"][0] if dev is not None else held,
             "test": counts["test"][0] if test is not None else held}
    splits = {"train": train, "dev": dev if dev is not None else parts["dev"],
              "test": test if test is not None else parts["test"]}
    info = DatasetInfo(name, int(num_classes), shape, sizes["train"], sizes["dev"], sizes["test"],
                       notes=tuple(notes))
    return Splits(*(DatasetSplit(splits[p], sizes[p], shape) for p in ("train", "dev", "test")),
                  info=info)


def _count(dataset, labels_needed, name, part):
    """``(examples, largest label)`` of a dataset (one pass; the label only when needed)."""
    from tfnet.data import preparation

    count, top = 0, -1
    try:
        for _, y in dataset.batch(4096).as_numpy_iterator():
            count += len(y)
            if labels_needed:
                top = max(top, int(np.max(y)))
    except tf.errors.OpError:  # an example that cannot be read: named, one by one
        data_checks.check_one_shape(name, part, preparation.shapes(dataset, name, part))
        raise
    if not count:
        raise BadDataError("a dataset given to tfnet must have at least one example")
    return count, top


def input_shape(name, data_dir=None, label_column="label", image_size=()):
    """The shape of one example of dataset ``name``, read from its metadata, its header or its
    first image only (nothing is downloaded, nothing else is read); raises
    ``DatasetNotFoundError`` as ``load`` does."""
    if name in embedded.EMBEDDED_DATASETS:
        return (2,)
    if not is_path(name):
        return tfds_source.input_shape(name, data_dir)
    check_path(name)
    if os.path.isdir(name):
        train = os.path.join(name, "train")
        folder = train if os.path.isdir(train) and os.path.isdir(os.path.join(name, "test")) else name
        classes = images._classes(folder)
        first = images._images(folder, classes[:1])[0][0]
        return images._example_shape(first, image_size)[0]
    if name.endswith(".npz"):
        with np.load(name) as archive:
            if "x_train" not in archive.files:
                raise BadDataError(f"dataset must be a .npz holding x_train, y_train. Received: "
                                   f"dataset={name!r}, whose arrays are {', '.join(archive.files)}")
            rows = files.RowFile.of_npz_member(name, "x_train")
            shape = rows.shape[1:] if rows is not None else archive["x_train"].shape[1:]
        return tuple(shape) + ((1,) if len(shape) == 2 else ())
    return (len(tables.feature_columns(name, label_column)),)
