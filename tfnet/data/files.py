"""Arrays in files, read by position without loading them: ``.npy`` files, the uncompressed
members of a ``.npz``, and the copies ``write_copy`` makes of splits that can only be read in
order.

A ``RowFile`` copies the rows it is asked for out of its file with one positional read
(``pread``) per run of consecutive rows, into an array of those rows alone: reading a few rows
costs memory for those rows only, so a file far bigger than memory can be trained on, and reads
from several threads at once need no lock. (A memory map was tried and dropped: the kernel maps a
whole page-cache folio, measured at 1.75 MB here, around each row it faults in, so 256 scattered
rows took hundreds of megabytes of resident memory and 1.6x a pread's time.)
"""

import hashlib
import json
import os
import shutil
import struct
import tempfile
import zipfile

import numpy as np
import tensorflow as tf

from tfnet.data_checks import BadDataError
from tfnet.data.splits import CHUNK, ArraySplit, Split

# A zip local file header: signature, versions, flags, method, times, CRC, sizes, then the
# lengths of the name and the extra field (struct format of its first 30 bytes).
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")


class RowFile:
    """Rows of one array stored row-major at ``offset`` in the file ``path``."""

    def __init__(self, path, offset, dtype, shape):
        self.path, self.offset = path, int(offset)
        self.dtype, self.shape = np.dtype(dtype), tuple(int(d) for d in shape)
        self.row_bytes = self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))
        self._fd = None

    @classmethod
    def of_npy(cls, path, member_offset=0):
        """The array of a ``.npy`` file (or of one starting at ``member_offset`` in a file)."""
        with open(path, "rb") as f:
            f.seek(member_offset)
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran_order, dtype = read_header(f)
            if fortran_order:
                raise BadDataError(f"{path}: arrays in Fortran order cannot be read by row")
            return cls(path, f.tell(), dtype, shape)

    @classmethod
    def of_npz_member(cls, path, member):
        """The array ``member`` (e.g. ``x_train``) of the ``.npz`` file ``path``, if stored
        uncompressed (``np.savez``); None if compressed (``np.savez_compressed``)."""
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(f"{member}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            header = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
        name_length, extra_length = header[-2], header[-1]
        return cls.of_npy(path, info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)

    def __len__(self):
        return self.shape[0]

    def read(self, positions):
        """The rows at ``positions`` (int64 [k]), as float32 [k, ...]: one ``pread`` per run of
        consecutive positions, into the result's own memory."""
        positions = np.asarray(positions, np.int64).reshape(-1)
        rows = np.empty((len(positions), *self.shape[1:]), self.dtype)
        buffer = memoryview(rows.reshape(-1).view(np.uint8))
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        b = self.row_bytes
        starts = np.flatnonzero(np.diff(positions, prepend=-2) != 1)  # where a run starts
        lengths = np.diff(starts, append=len(positions))
        offsets = self.offset + positions[starts] * b
        # Plain Python ints in the loop: about 1 µs a row, where numpy scalars cost twice that.
        for start, length, offset in zip(starts.tolist(), lengths.tolist(), offsets.tolist()):
            if os.preadv(self._fd, [buffer[start * b:(start + length) * b]], offset) != length * b:
                raise BadDataError(f"{self.path}: ends before row {positions[start]} of "
                                   f"{len(self)} (the file was cut short or changed)")
        return rows.astype(np.float32, copy=False)

    def __getstate__(self):  # a file descriptor does not travel to another process
        return dict(self.__dict__, _fd=None)

    def __del__(self, close=os.close):  # os may be gone when the interpreter shuts down
        if getattr(self, "_fd", None) is not None:
            close(self._fd)


class FileSplit(Split):
    """A split whose features are a ``RowFile`` (read by position) and whose labels are in
    memory. ``example_shape`` may add a trailing channel axis to the stored rows' shape."""

    readable = True

    def __init__(self, rows, labels, example_shape=None):
        self.rows = rows
        self.labels = np.asarray(labels, np.int64).reshape(-1)
        if len(self.labels) != len(rows):
            raise BadDataError(f"{rows.path}: {len(rows)} feature rows but {len(self.labels)} labels")
        self.num_examples = len(rows)
        self.example_shape = tuple(example_shape or rows.shape[1:])
        self.source = rows.path

    def read_rows(self, indices):
        rows = tf.numpy_function(self.rows.read, [indices], tf.float32, stateful=False)
        return tf.reshape(rows, (-1, *self.example_shape))


def to_arrays(split):
    """Every example of ``split`` in memory: ``(features float32 [m, ...], labels int64 [m])``."""
    if isinstance(split, ArraySplit) and not isinstance(split.features, np.memmap):
        return split.features.astype(np.float32, copy=False), split.labels
    if any(d is None for d in split.example_shape):  # a dimension known only from the data
        chunks = list(split.batches(CHUNK).as_numpy_iterator())
        features = np.concatenate([x for x, _ in chunks]) if chunks else np.zeros([0])
        labels = np.concatenate([y for _, y in chunks]) if chunks else np.zeros([0], np.int64)
        return features.astype(np.float32, copy=False), labels
    features = np.empty((split.num_examples, *split.example_shape), np.float32)
    labels = np.empty(split.num_examples, np.int64)
    start = 0
    for x, y in split.batches(CHUNK).prefetch(2).as_numpy_iterator():
        features[start:start + len(y)], labels[start:start + len(y)] = x, y
        start += len(y)
    if start != split.num_examples:
        raise BadDataError(f"{split.source}: read {start} examples, expected {split.num_examples}")
    return features, labels


def write_copy(split, directory):
    """Writes ``split`` to ``directory`` (features as raw float32 rows, labels as ``.npy``) and
    returns the copy as a readable ``FileSplit``. The copy is complete or absent: it is written
    into a temporary directory beside ``directory`` and renamed into place at the end. A copy
    already there (a previous run's) is reused."""
    if not os.path.exists(os.path.join(directory, "meta.json")):
        staging = staging_dir(directory)
        try:
            labels = []
            with open(os.path.join(staging, "features.f32"), "wb") as f:
                for x, y in split.batches(CHUNK).prefetch(2).as_numpy_iterator():
                    f.write(np.ascontiguousarray(x, np.float32).tobytes())
                    labels.append(y)
            labels = np.concatenate(labels) if labels else np.zeros([0], np.int64)
            finish_copy(staging, directory, labels, split.example_shape)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return open_copy(directory)[0]


def staging_dir(directory):
    """A new temporary directory beside ``directory``, for a copy being written."""
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=".tmp-copy-", dir=parent)


def finish_copy(staging, directory, labels, example_shape, class_names=()):
    """Completes a copy whose ``features.f32`` is written in ``staging``: saves its labels,
    class names and shape, then renames it to ``directory`` (atomic)."""
    np.save(os.path.join(staging, "labels.npy"), np.asarray(labels, np.int64))
    with open(os.path.join(staging, "meta.json"), "w") as f:
        json.dump({"shape": [len(labels), *example_shape], "class_names": list(class_names)}, f)
    try:
        os.rename(staging, directory)
    except OSError:  # another process finished the same copy first
        if not os.path.exists(os.path.join(directory, "meta.json")):
            raise


def open_copy(directory):
    """The copy in ``directory`` (``write_copy``): ``(FileSplit, class_names)``."""
    with open(os.path.join(directory, "meta.json")) as f:
        meta = json.load(f)
    rows = RowFile(os.path.join(directory, "features.f32"), 0, np.float32, meta["shape"])
    split = FileSplit(rows, np.load(os.path.join(directory, "labels.npy")))
    return split, tuple(meta.get("class_names", ()))


def cache_key(*parts):
    """A directory name for a copy of the data that ``parts`` identify (paths, sizes, times)."""
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def file_identity(path):
    """What says that a file is unchanged: its absolute path, size and modification time."""
    stat = os.stat(path)
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def load_npz(path, dev_fraction, name):
    """``Splits`` of a ``.npz`` file holding ``x_train``, ``y_train`` and optionally ``x_test``,
    ``y_test`` (as ``keras.datasets`` ships them; ``np.savez`` writes them).

    Arrays stored uncompressed (``np.savez``) are read by position from the file, never loaded
    whole; compressed ones (``np.savez_compressed``) are loaded into memory. Images of shape
    (m, height, width) get a channel axis, (m, height, width, 1); labels of shape (m, 1) are
    flattened. C is the largest label + 1. Dev is carved from train at random
    (``tfnet.data.splits.splits_from``), and a test split is held out where there is none.
    """
    from tfnet.data import splits as splits_lib

    try:
        with np.load(path) as archive:
            members = set(archive.files)
            missing = {"x_train", "y_train"} - members
            if missing or ("x_test" in members) != ("y_test" in members):
                raise BadDataError(
                    f"dataset must be a .npz holding x_train, y_train and optionally x_test, "
                    f"y_test (as keras.datasets ships them). Received: dataset={path!r}, whose "
                    f"arrays are {', '.join(sorted(members)) or 'none'}")
            labels = {key: archive[key].reshape(-1) for key in members if key.startswith("y_")}
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise BadDataError(f"dataset must be a readable .npz file. Received: dataset={path!r} "
                         f"({error})") from None

    def split(part):
        features = RowFile.of_npz_member(path, f"x_{part}")
        y = labels[f"y_{part}"]
        if features is None:  # compressed: decompressed into memory
            with np.load(path) as archive:
                x = archive[f"x_{part}"]
            x = x[..., None] if x.ndim == 3 else x
            return ArraySplit(x, _integer_labels(path, part, y))
        shape = features.shape[1:] + ((1,) if len(features.shape) == 3 else ())
        return FileSplit(features, _integer_labels(path, part, y), shape)

    train = split("train")
    test = split("test") if "y_test" in labels else None
    num_classes = int(max(train.labels.max(initial=0),
                          test.labels.max(initial=0) if test else 0)) + 1
    return splits_lib.splits_from(name, train, test, num_classes, dev_fraction)


def _integer_labels(path, part, labels):
    if not np.issubdtype(labels.dtype, np.integer):
        whole = np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels))
        if not whole:
            raise BadDataError(f"y_{part} must hold integer class labels. Received: dataset={path!r} "
                             f"with y_{part} of dtype {labels.dtype}")
    return labels.astype(np.int64)
