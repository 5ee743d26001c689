"""TFDS image-classification datasets prepared in a data directory, read with ``download=False``
so that nothing probes the network.

The dev split is carved from the training split by TFDS split slicing (``train[:80%]`` /
``train[80%:]`` for ``dev_fraction=0.2``); the test split is the dataset's own. Features are
the raw pixel values, float32 in [0, 255].
"""

import os

from tfnet import errors
from tfnet.data.embedded import EMBEDDED_DATASETS
from tfnet.data.splits import DatasetInfo, DatasetSplit, Splits


class DatasetNotFoundError(errors.TfnetError, ValueError):
    """The dataset name is unknown, or its data is not prepared in ``data_dir``."""


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


def load_tfds(name, data_dir, dev_fraction):
    """``Splits`` of the TFDS dataset ``name`` prepared in ``data_dir`` (see the module)."""
    import tensorflow_datasets as tfds

    builder = _tfds_builder(name, data_dir)
    image_key, label_key = builder.info.supervised_keys
    num_classes = builder.info.features[label_key].num_classes
    input_shape = tuple(builder.info.features[image_key].shape)
    if "test" not in builder.info.splits:
        raise DatasetNotFoundError(f"dataset {name!r} has no 'test' split: {list(builder.info.splits)}")

    # Percent slicing keeps the dev examples out of train exactly (TFDS rounds both boundaries
    # the same way); each epoch's order is drawn later (tfnet.data.order).
    train_percent = 100 * (1 - dev_fraction)
    split_names = [f"train[:{train_percent:g}%]", f"train[{train_percent:g}%:]", "test"]
    read_config = tfds.ReadConfig(shuffle_seed=0, interleave_cycle_length=1)
    train, dev, test = builder.as_dataset(
        split=split_names, as_supervised=True, shuffle_files=False, read_config=read_config
    )
    sizes = [builder.info.splits[s].num_examples for s in split_names]

    info = DatasetInfo(name, num_classes, input_shape, *sizes)
    source = f"TFDS {name} in {data_dir or '~/tensorflow_datasets'}"
    return Splits(*(DatasetSplit(d, n, input_shape, source) for d, n in zip((train, dev, test), sizes)),
                  info=info)


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


