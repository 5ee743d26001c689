"""Start-up checks that a directory can be written, so that a run fails before training."""

import os
import shutil
import tempfile

from tfnet import errors

# Free space a run needs at the least (checkpoints, events and an export of a small model).
MIN_FREE_BYTES = 64 * 2**20


class UnusablePathError(errors.TfnetError, ValueError):
    """A directory the run must write to cannot be used."""


def check_writable_dir(path, name, min_free_bytes=MIN_FREE_BYTES):
    """Raises ``UnusablePathError`` unless ``path`` is, or can be created as, a writable directory.

    Checks, in order: ``path`` is not a file; its nearest existing ancestor is a directory (not
    a file in the middle of the path); a file can really be created there (a probe, because
    permission bits say nothing to root or on read-only mounts); at least ``min_free_bytes`` are
    free on that file system. Nothing is left behind.

    Args:
      path: the directory.
      name: the argument or flag it came from, for the message (e.g. "model_dir").
      min_free_bytes: the least free space accepted. Default 64 MiB.
    """
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UnusablePathError(f"{name} must be a directory, but {path} is a file. Received: {name}={path}")
    ancestor = path
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise UnusablePathError(
            f"{name} must be a directory path, but {ancestor} is a file. Received: {name}={path}"
        )
    try:
        with tempfile.NamedTemporaryFile(dir=ancestor, prefix=".tfnet-probe-"):
            pass
    except OSError as error:
        raise UnusablePathError(
            f"{name} must be writable, but {ancestor} is not ({error.strerror}). Received: {name}={path}"
        ) from None
    free = shutil.disk_usage(ancestor).free
    if free < min_free_bytes:
        raise UnusablePathError(
            f"{name} needs at least {min_free_bytes / 2**20:.0f} MiB free, but the disk holding "
            f"{ancestor} has {free / 2**20:.1f} MiB (disk full). Received: {name}={path}"
        )
