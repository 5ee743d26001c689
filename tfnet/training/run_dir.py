"""The run directory's policy: one writer; resume a run, refuse to mix two, or start over.

A run holds an exclusive lock on ``run.lock`` in its ``model_dir`` (``tfnet.locks``) from before
the policy is applied to its end, so a second run on the same directory is refused at once,
before it can delete or write anything, naming the process that holds it. Under multi-worker
training only the chief, which alone writes the directory, takes it.

A ``model_dir`` with a ``config.json`` holds a run. Starting on it with ``resume`` continues
that run, provided the configuration differs only in ``config.RESUMABLE_FIELDS`` (more epochs,
other outputs or strategy); ``resume=False`` starts over only with ``overwrite``, which deletes
the old run (everything in the directory but the held lock file). The check reads only
``config.json``, before anything is written or loaded.
"""

import dataclasses
import json
import os
import shutil

from tfnet import config as config_lib
from tfnet import errors
from tfnet import locks

# The lock file a run holds in its model_dir.
LOCK_FILE = "run.lock"


class RunDirError(errors.TfnetError, ValueError):
    """``model_dir`` holds a run that this configuration must not mix with, or another run is
    writing it."""


def prepare(config, chief=True, identity=None):
    """Locks ``config.run_dir`` (on the chief), then applies the policy; returns the lock.

    Args:
      config: the run's ``TrainConfig``.
      chief: whether this process writes the run directory: it takes the lock and deletes an
        overwritten run (False on the other workers of a multi-worker run).
      identity: what names a user's model and data beside the config
        (``trainer.run_identity``), compared as the config's fields are; None for none.

    Returns:
      The held ``locks.DirectoryLock``, to be released when the run ends (or left to the end
      of the process); None when ``chief`` is False.

    Raises:
      RunDirError: another process holds the directory's lock, or the runs would mix. The lock
        is released before the error is raised.
    """
    lock = _lock(config.run_dir) if chief else None
    try:
        _apply_policy(config, identity, delete=chief)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return lock


def _lock(run_dir):
    try:
        return locks.DirectoryLock.acquire(run_dir, LOCK_FILE)
    except locks.LockHeldError as held:
        raise RunDirError(
            f"model_dir {run_dir}: another run is writing it, {held.holder} (it holds "
            f"{held.path}). Wait for that run to end or stop it, or choose another --model_dir."
        ) from None


def saved_record(config, identity):
    """What ``config.json`` holds: the config's fields, their effective values (the optimiser's
    defaults filled in) and the identity of a user's model and data."""
    record = json.loads(json.dumps(dataclasses.asdict(config)))
    record["effective"] = json.loads(json.dumps(
        {name: config.effective(name) for name in record}, default=list))
    record["identity"] = json.loads(json.dumps(identity, default=str))
    return record


def _apply_policy(config, identity, delete):
    run_dir = config.run_dir
    saved = os.path.join(run_dir, "config.json")
    if not os.path.exists(saved):
        return
    if not config.resume:
        if not config.overwrite:
            raise RunDirError(
                f"model_dir {run_dir} already holds a run and --noresume was given: "
                "pass --overwrite to delete it, or choose another --model_dir."
            )
        if delete:
            _delete_run(run_dir)
        return
    with open(saved) as f:
        previous = json.load(f)
    record = saved_record(config, identity)
    current = dict(record["effective"], identity=record["identity"])
    before = dict(previous.get("effective", previous), identity=previous.get("identity"))
    changed = sorted(
        name for name in current
        if name not in config_lib.RESUMABLE_FIELDS and before.get(name) != current[name]
    )
    if changed:
        details = ", ".join(f"{n}: {before.get(n)!r} -> {current[n]!r}" for n in changed)
        raise RunDirError(
            f"model_dir {run_dir} holds a different run ({details}); resume it with its own "
            f"flags (--flagfile={os.path.join(run_dir, 'flags.txt')}), or start over with "
            "--noresume --overwrite, or choose another --model_dir."
        )


def _delete_run(run_dir):
    """Deletes everything in ``run_dir`` but the lock file, which this run holds."""
    for entry in os.scandir(run_dir):
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.remove(entry.path)
