"""Tabular data from a CSV file: a header, one example per line, the class in one column.

Every column but the label column is a numeric feature (float32); the label column holds the
class, as integers 0..C−1 or as names, numbered in sorted order (``DatasetInfo.class_names``).
The file is parsed in chunks of lines by numpy's C parser (quoted fields allowed). Where the
features fit ``memory_budget`` bytes they are held in memory; otherwise they are written once,
as they are parsed, to a copy in ``cache_dir`` that training reads by position
(``tfnet.data.files``), and later runs on the unchanged file reuse it. Dev (and, as a CSV has no
test split, test) are carved from the rows at random (``tfnet.data.splits.splits_from``): a file
sorted by class is split fairly.
"""

import csv
import itertools
import os
import re
import shutil

import numpy as np

from tfnet.data import files
from tfnet.data.splits import ArraySplit, splits_from
from tfnet.data_checks import BadDataError

# Lines parsed at a time.
_CHUNK_LINES = 65536
# numpy's message for a field that is not a number: its row (0-based) and column (1-based).
_NOT_A_NUMBER = re.compile(r"could not convert string '(.*)' to float32 at row (\d+), column (\d+)")


def load_csv(path, label_column, dev_fraction, name, memory_budget, cache_dir):
    """``Splits`` of the CSV file ``path`` (see the module docstring).

    Raises:
      BadDataError: no such label column, no feature column, no rows, a field that is not a
        number (named by line and column), or lines of another number of fields.
    """
    header, label_index, feature_index = _columns(path, label_column)
    copy_dir = os.path.join(cache_dir, files.cache_key("csv", files.file_identity(path), label_column))
    if os.path.exists(os.path.join(copy_dir, "meta.json")):
        split, class_names = files.open_copy(copy_dir)  # reused: nothing is parsed again
    else:
        split, class_names = _parse(path, header, label_index, feature_index, memory_budget,
                                    copy_dir)
    if not split.num_examples:
        raise BadDataError(f"dataset must have at least one example. Received: dataset={path!r}, "
                           "which has a header only")
    num_classes = len(class_names) or int(split.labels.max()) + 1
    return splits_from(name, split, None, num_classes, dev_fraction, class_names)


def feature_columns(path, label_column):
    """The names of the feature columns of the CSV file ``path`` (its header only is read)."""
    header, _, feature_index = _columns(path, label_column)
    return [header[i] for i in feature_index]


def _columns(path, label_column):
    """``(header, label column index, feature column indices)`` from the file's first line."""
    with open(path, newline="") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise BadDataError(f"dataset must be a CSV file with a header line. Received: "
                           f"dataset={path!r}, which is empty")
    header = [column.strip() for column in header]
    if label_column not in header:
        raise BadDataError(f"label_column must be one of the columns of {path}: "
                           f"{', '.join(header)}. Received: label_column={label_column!r}")
    label_index = header.index(label_column)
    feature_index = [i for i in range(len(header)) if i != label_index]
    if not feature_index:
        raise BadDataError(f"dataset must have a feature column besides label_column="
                           f"{label_column!r}. Received: dataset={path!r}")
    return header, label_index, feature_index


def _parse(path, header, label_index, feature_index, memory_budget, copy_dir):
    """Parses the file; returns ``(split, class_names)``, the split in memory or copied to
    ``copy_dir`` (with its class names) when the features would take more than
    ``memory_budget`` bytes (estimated from the file's size and the first chunk). A parse that
    fails leaves no copy."""
    features, labels, sink = [], [], None
    try:
        with open(path, newline="") as f:
            next(f)  # the header
            line_number = 2
            while True:
                lines = list(itertools.islice(f, _CHUNK_LINES))
                if not lines:
                    break
                x, y = _parse_chunk(path, header, lines, line_number, label_index, feature_index)
                if sink is None and _too_big(path, lines, x, memory_budget):
                    sink = _CopySink(copy_dir, x.shape[1:])
                    for held in features:  # the chunks parsed before the size was known
                        sink.write(held)
                    features = []
                if sink is not None:
                    sink.write(x)
                else:
                    features.append(x)
                labels.append(y)
                line_number += len(lines)
        labels = np.concatenate(labels) if labels else np.zeros([0], str)
        numbers, class_names = _class_ids(labels)
        if sink is not None:
            return sink.close(numbers, class_names), class_names
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    x = np.concatenate(features) if features else np.zeros([0, len(feature_index)], np.float32)
    return ArraySplit(x, numbers), class_names


def _parse_chunk(path, header, lines, line_number, label_index, feature_index):
    try:
        x = np.loadtxt(lines, delimiter=",", usecols=feature_index, dtype=np.float32,
                       quotechar='"', ndmin=2)
        y = np.loadtxt(lines, delimiter=",", usecols=[label_index], dtype=str, quotechar='"',
                       ndmin=1)
    except ValueError as error:
        match = _NOT_A_NUMBER.search(str(error))
        if match:
            value, row, column = match.group(1), int(match.group(2)), int(match.group(3))
            raise BadDataError(
                f"dataset {path}, line {line_number + row}: column "
                f"{header[feature_index[column - 1]]!r} must be a number. Received: {value!r}. "
                "Every column but the label column is a numeric feature.") from None
        raise BadDataError(f"dataset {path}, lines {line_number}-{line_number + len(lines) - 1}: "
                           f"every line must have the header's {len(header)} fields ({error})") from None
    return x, np.char.strip(y)


def _too_big(path, lines, x, memory_budget):
    line_bytes = sum(len(line) for line in lines) / len(lines)
    estimated_rows = os.path.getsize(path) / max(line_bytes, 1)
    return estimated_rows * x.shape[1] * 4 > memory_budget


def _class_ids(labels):
    """Class numbers from label strings: the integers themselves, or the sorted names' ranks."""
    try:
        numbers = labels.astype(np.int64)
        return numbers, ()
    except ValueError:
        names, numbers = np.unique(labels, return_inverse=True)
        return numbers.astype(np.int64), tuple(str(n) for n in names)


class _CopySink:
    """Features written, chunk by chunk, into a copy in the format of ``files.write_copy``."""

    def __init__(self, copy_dir, row_shape):
        self.copy_dir, self.row_shape = copy_dir, tuple(row_shape)
        self.staging = files.staging_dir(copy_dir)
        self.file = open(os.path.join(self.staging, "features.f32"), "wb")

    def write(self, x):
        self.file.write(np.ascontiguousarray(x, np.float32).tobytes())

    def close(self, labels, class_names):
        self.file.close()
        try:
            files.finish_copy(self.staging, self.copy_dir, labels, self.row_shape, class_names)
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)
        return files.open_copy(self.copy_dir)[0]

    def abort(self):
        self.file.close()
        shutil.rmtree(self.staging, ignore_errors=True)
