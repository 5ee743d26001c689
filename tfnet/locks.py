"""One holder at a time for a directory: an exclusive ``flock`` on a file inside it.

``DirectoryLock.acquire(directory, filename)`` creates ``directory`` if needed, opens
``<directory>/<filename>`` (creating it, never truncating it before the lock is held) and takes an
exclusive, non-blocking ``fcntl.flock`` on it. The holder then writes its process id and host
name into the file, so that a process refused the lock can say who holds it.

What is guaranteed: while a process holds the lock, every other ``acquire`` of the same file
fails at once with ``LockHeldError``; the lock is released by ``release()`` (or leaving the
``with`` block), and by the kernel when the holder's process ends however it ends (exit, an
exception, SIGKILL, a crash), because closing the file's last descriptor releases a ``flock``.
The lock lives as long as its open file: keep the returned ``DirectoryLock``, whose collection
closes it.

What is not: the lock is advisory, so it binds only processes that take it; the file is left in
place (unlinking it on release would let a latecomer lock a new file while a process that opened
the old one locks that); and on network file systems it is as good as their ``flock`` (NFS v4
emulates it with byte-range locks; some FUSE file systems only pretend).
"""

import fcntl
import os
import socket

from tfnet import errors


class LockHeldError(errors.TfnetError, RuntimeError):
    """Another process holds the lock.

    Attributes:
      path: the lock file.
      holder: who holds it, as the holder wrote it ("process 1234 on host"), or "an unknown
        process" when it has not written yet.
    """

    def __init__(self, path, holder):
        super().__init__(f"{path} is locked by {holder}")
        self.path = path
        self.holder = holder


class DirectoryLock:
    """An exclusive lock held on ``<directory>/<filename>``; use ``acquire`` to take one."""

    def __init__(self, path, file):
        self.path = path
        self._file = file

    @classmethod
    def acquire(cls, directory, filename):
        """Takes the lock, creating ``directory`` if needed; returns the held ``DirectoryLock``.

        Raises:
          LockHeldError: another process holds it (the call does not wait).
        """
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, filename)
        file = open(path, "a+")  # "a+": the holder's id is not erased by a process refused.
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "an unknown process"
            file.close()
            raise LockHeldError(path, holder) from None
        file.truncate(0)
        file.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        file.flush()
        return cls(path, file)

    def release(self):
        """Releases the lock (closing the file); a second call does nothing."""
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()
        return False
