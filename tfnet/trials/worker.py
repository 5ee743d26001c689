"""One trial inside a Ray worker: a tfnet run in this process, reported to Tune as it goes.

``train_trial`` is the Tune trainable (function API) that ``tfnet.trials.run`` starts once per
trial, in a worker process that Tune reuses from trial to trial (TensorFlow is imported once per
worker). One call:

1. takes the trial's run directory over: it waits while the lock of the run there is held (the
   attempt that ran on a node that died may take a moment to go: its process, or the lease of
   its lock on a network file system);
2. restores the run's state from Tune's checkpoint when Tune restarts the trial after its node
   died (``tune.get_checkpoint()``): ``checkpoints/``, ``best/``, ``config.json`` and
   ``flags.txt`` are put back as they were reported, and tfnet resumes from there bit for bit
   (it prunes the TensorBoard events logged past that step). A run directory holding no
   checkpoint holds at most the leftovers of an attempt killed before its first one: it is
   emptied, so the trial starts as new (one HParams session, no doubled curve);
3. trains with ``tfnet.training.train(config, actions=[report])``: after every evaluation the
   epoch's metrics and this node's id go to Tune, with the run's state as the Tune checkpoint
   when tfnet has written a checkpoint since the last report (how often is the trial's own
   ``checkpoint_every_steps`` / ``checkpoint_every_seconds``). The run directory's TensorBoard
   events stay where they are: a checkpoint holds what resuming needs, so a search directory
   never shows a trial twice;
4. reports the outcome last: ``ok``, ``diverged`` (``NonFiniteError``) or ``failed`` (any other
   exception: a configuration or a dataset the run refuses), with the reason. These are the
   trial's results, so they are returned, never raised: Tune restarts only a trial whose worker
   or node died.

A scheduler that stops the trial (ASHA) does so inside a report, where Tune ends this thread
with ``SystemExit``; tfnet releases the run directory on the way out, and no outcome is reported.
"""

import os
import shutil
import tempfile
import time

from tfnet import locks

# The run's state as a Tune checkpoint: what tfnet needs to resume it exactly.
STATE_ENTRIES = ("checkpoints", "best", "config.json", "flags.txt")
# How long a new attempt waits for the previous attempt's lock on the run directory to go.
LOCK_WAIT_SECONDS = 120.0
# The keys of each evaluated epoch's record reported to Tune (tfnet's history record).
EPOCH_KEYS = ("epoch", "step", "train_loss", "train_accuracy", "dev_loss", "dev_accuracy",
              "learning_rate", "seconds")


def train_trial(tune_config, configs):
    """The trainable: trains ``configs[tune_config["trial"]]`` (a ``TrainConfig``)."""
    import ray
    from ray import tune

    from tfnet import training

    config = configs[tune_config["trial"]]
    node_id = ray.get_runtime_context().get_node_id()
    lock = _take_over(config.run_dir)
    if lock is not None:  # else training refuses the directory, naming who holds it
        with lock:
            checkpoint = tune.get_checkpoint()
            if checkpoint is not None:
                with checkpoint.as_directory() as state_dir:
                    _restore_state(state_dir, config.run_dir)
            elif not _has_checkpoint(config.run_dir):
                _empty(config.run_dir)
    report = _Report(config.run_dir, node_id)
    outcome = dict(outcome="ok", error="")
    try:
        training.train(config, verbose=0, actions=[report])
    except Exception as error:  # noqa: BLE001 - the trial's own failure is its result
        kind = "diverged" if isinstance(error, training.NonFiniteError) else "failed"
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        outcome = dict(outcome=kind, error=f"{type(error).__name__}: {first_line}")
    tune.report({**report.last, **outcome, "node_id": node_id})


class _Report:
    """The action reporting each evaluated epoch to Tune, with the run's state when it changed."""

    def __init__(self, run_dir, node_id):
        self.run_dir = run_dir
        self.node_id = node_id
        self.last = {key: float("nan") for key in EPOCH_KEYS}
        self.last["epoch"] = 0
        self._reported_state = _checkpoint_state(run_dir)

    def __call__(self, metrics):
        from ray import tune

        self.last = {key: metrics[key] for key in EPOCH_KEYS}
        state = _checkpoint_state(self.run_dir)
        if state == self._reported_state:
            tune.report({**self.last, "node_id": self.node_id})
            return
        staging = tempfile.mkdtemp(prefix="tfnet-trial-state-")
        try:
            _copy_entries(self.run_dir, staging)
            tune.report({**self.last, "node_id": self.node_id},
                        checkpoint=tune.Checkpoint.from_directory(staging))
        finally:
            # Tune copied it to its storage before report returned (or ended this thread).
            shutil.rmtree(staging, ignore_errors=True)
        self._reported_state = state


def _checkpoint_state(run_dir):
    """The text of the run's checkpoint state file (it names the latest checkpoint), or None."""
    try:
        with open(os.path.join(run_dir, "checkpoints", "checkpoint")) as f:
            return f.read()
    except OSError:
        return None


def _has_checkpoint(run_dir):
    return _checkpoint_state(run_dir) is not None


def _copy_entries(source, destination):
    for name in STATE_ENTRIES:
        path = os.path.join(source, name)
        if os.path.isdir(path):
            shutil.copytree(path, os.path.join(destination, name))
        elif os.path.isfile(path):
            shutil.copy2(path, destination)


def _restore_state(state_dir, run_dir):
    """Puts the reported state back into ``run_dir`` in place of whatever the dead attempt left."""
    for name in STATE_ENTRIES:
        path = os.path.join(run_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    _copy_entries(state_dir, run_dir)


def _empty(run_dir):
    """Deletes everything in ``run_dir`` but the run's lock file."""
    from tfnet.training import run_dir as run_dir_lib

    for entry in os.scandir(run_dir):
        if entry.name == run_dir_lib.LOCK_FILE:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.remove(entry.path)


def _take_over(run_dir):
    """The run directory's lock, once a previous attempt's has gone (waiting up to
    ``LOCK_WAIT_SECONDS``); None if it is still held then."""
    from tfnet.training import run_dir as run_dir_lib

    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            return locks.DirectoryLock.acquire(run_dir, run_dir_lib.LOCK_FILE)
        except locks.LockHeldError:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.2)
