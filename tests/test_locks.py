"""tfnet.locks: one holder at a time, named to whoever is refused, released however it ends."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from helpers import script_env
from tfnet import locks


def test_a_second_holder_is_refused_with_the_first_ones_name_until_it_releases(tmp_path):
    directory = tmp_path / "new" / "dir"  # created
    with locks.DirectoryLock.acquire(str(directory), "x.lock") as held:
        assert held.path == str(directory / "x.lock")
        with pytest.raises(locks.LockHeldError) as refused:
            locks.DirectoryLock.acquire(str(directory), "x.lock")
        assert refused.value.holder == f"process {os.getpid()} on {socket.gethostname()}"
        # The refused attempt did not erase the holder's name.
        assert (directory / "x.lock").read_text() == f"{refused.value.holder}\n"
    locks.DirectoryLock.acquire(str(directory), "x.lock").release()


def test_a_holder_killed_outright_leaves_the_lock_free(tmp_path):
    code = ("import sys, time\nfrom tfnet import locks\n"
            "lock = locks.DirectoryLock.acquire(sys.argv[1], 'x.lock')\nprint('held', flush=True)\n"
            "time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=script_env(),
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(locks.LockHeldError, match=f"process {holder.pid} on "):
        locks.DirectoryLock.acquire(str(tmp_path), "x.lock")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    locks.DirectoryLock.acquire(str(tmp_path), "x.lock").release()
