"""Datasets as train / dev / test splits of ``(features, label)`` examples, and their mini-batches.

Sources (``tfnet.data.sources``), each giving ``Splits``:

- **embedded 2-D sets** (``moons``, ``circles``, ``flower``), generated from a seed: no download;
- **TFDS image-classification datasets** prepared in a data directory (``mnist``, ``cifar10``,
  the offline ``mnist_t10k``, ...), read with ``download=False``;
- **a path**: a ``.npz`` of ``x_train, y_train[, x_test, y_test]`` (``tfnet.data.files``), a
  ``.csv`` with a header (``tfnet.data.tables``), a folder of images with one subfolder per
  class (``tfnet.data.images``);
- **a user's arrays** (``from_arrays``) or **tf.data pipelines** (``from_datasets``).

Dev is carved from the training split (at random for files and arrays, the tail for TFDS and
``tf.data``, docs/methods.md §1); a source without a test split has one held out too, and says
so (``DatasetInfo.notes``). Features are float32 (raw pixel values in [0, 255] for images);
normalisation is not applied here: its statistics come from the training split
(``preparation.normalization_statistics``) and live inside the model, so an exported model takes raw
inputs. ``prepare`` places each split in memory or streams it from disk (``stream``), checks it
and computes those statistics. Each epoch's order is a pure function of (seed, epoch)
(``order``), for the in-memory and the streamed path alike.
"""

from tfnet.data import preparation, sources
from tfnet.data.embedded import EMBEDDED_DATASETS, make_embedded
from tfnet.data.order import (
    augmentation_seed,
    batch_indices,
    epoch_key,
    epoch_order,
    epoch_orders,
    replica_rows,
    steps_per_epoch,
)
from tfnet.data.preparation import Examples, PreparedData, in_memory, normalization_statistics, prepare
from tfnet.data.sources import from_arrays, from_datasets, input_shape, is_path, load
from tfnet.data.splits import DatasetInfo, Split, Splits
from tfnet.data.tfds_source import DatasetNotFoundError, check_available
from tfnet.data_checks import BadDataError

__all__ = [
    "BadDataError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "EMBEDDED_DATASETS",
    "Examples",
    "PreparedData",
    "Split",
    "Splits",
    "augmentation_seed",
    "batch_indices",
    "check_available",
    "epoch_key",
    "epoch_order",
    "epoch_orders",
    "from_arrays",
    "from_datasets",
    "in_memory",
    "input_shape",
    "is_path",
    "load",
    "make_embedded",
    "normalization_statistics",
    "prepare",
    "preparation",
    "replica_rows",
    "sources",
    "steps_per_epoch",
]
