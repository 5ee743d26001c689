"""One task inside a Ray worker: its trials, tfnet runs in this process, reported to Tune as they go.

``run_task`` is the Tune trainable (function API) that ``tfnet.trials.run`` starts once per
task (a Ray Tune trial training one or more of tfnet's trials one after another), in a worker
process that Tune reuses from task to task (TensorFlow is imported once per worker). For each
trial of the task not finished yet, in order, it:

1. takes the trial's run directory over: it waits while the lock of the run there is held (the
   attempt that ran on a node that died may take a moment to go: its process, or the lease of
   its lock on a network file system);
2. restores the run's state from Tune's checkpoint when Tune restarted the task after its node
   died (``tune.get_checkpoint()``) while this trial was training: ``checkpoints/``, ``best/``,
   ``config.json`` and ``flags.txt`` are put back as they were reported, and tfnet resumes from
   there bit for bit (it prunes the TensorBoard events logged past that step). A run directory
   holding no checkpoint holds at most the leftovers of an attempt killed before its first one:
   it is emptied, so the trial starts as new (one HParams session, no doubled curve);
3. trains with ``tfnet.training.train(config, actions=[report])``: after every evaluation the
   epoch's metrics, the trial's name and this node's id go to Tune, with the run's state as the
   Tune checkpoint when tfnet has written a checkpoint since the last report (how often is the
   trial's own ``checkpoint_every_steps`` / ``checkpoint_every_seconds``). Under a scheduler
   (ASHA, which decides at each evaluation) every epoch is a report of its own; otherwise the
   evaluated epochs go in batches, one report each ``report_every_seconds`` (``"epochs"``: their
   records, the last one's metrics at the top level), and at once with a checkpoint or the
   outcome: each report is a round trip through Tune's loop in the driver, which took 12 s of
   CPU per 100 s of a study of second-long trials on the two cores its workers wanted (Tune's
   own result buffering would do this, but Ray 2.60 registers the wrong checkpoints with it:
   ``runner``). The run directory's TensorBoard events stay where they are: a checkpoint holds
   what resuming needs, so a search directory never shows a trial twice;
4. reports the trial's outcome: ``ok``, ``diverged`` (``NonFiniteError``) or ``failed`` (any
   other exception: a configuration or a dataset the run refuses), with the reason. These are
   the trial's results, so they are returned, never raised: Tune restarts only a task whose
   worker or node died. Unless it is the task's last, the outcome's report carries a checkpoint
   naming the task's finished trials (``TASK_FILE``), so that a restarted task skips them.

A scheduler that stops the task (ASHA; its tasks are single trials) does so inside a report,
where Tune ends this thread with ``SystemExit``; tfnet releases the run directory on the way
out, and no outcome is reported.
"""

import json
import os
import shutil
import tempfile
import time

from tfnet import locks

# The run's state as a Tune checkpoint: what tfnet needs to resume it exactly.
STATE_ENTRIES = ("checkpoints", "best", "config.json", "flags.txt")
# In every Tune checkpoint of a task: {"finished": [its trials that ended], "training": the
# trial whose state the checkpoint holds, or null}.
TASK_FILE = "task.json"
# How long a new attempt waits for the previous attempt's lock on the run directory to go.
LOCK_WAIT_SECONDS = 120.0
# The keys of each evaluated epoch's record reported to Tune (tfnet's history record).
EPOCH_KEYS = ("epoch", "step", "train_loss", "train_accuracy", "dev_loss", "dev_accuracy",
              "learning_rate", "seconds")


def run_task(tune_config):
    """The trainable: trains the trials of ``tune_config["trials"]``, a list of
    ``(name, TrainConfig)``, one after another."""
    import ray
    from ray import tune

    trials = tune_config["trials"]
    every = tune_config["report_every_seconds"]
    node_id = ray.get_runtime_context().get_node_id()
    checkpoint = tune.get_checkpoint()
    task_state = {"finished": [], "training": None}
    if checkpoint is not None:
        with checkpoint.as_directory() as state_dir:
            with open(os.path.join(state_dir, TASK_FILE)) as f:
                task_state = json.load(f)
    finished = list(task_state["finished"])
    for index, (name, config) in enumerate(trials):
        if name in finished:
            continue
        restore = checkpoint if name == task_state["training"] else None
        outcome, report = _train(name, config, node_id, restore, finished, every)
        finished.append(name)
        result = {**report.result(), **outcome}
        if index == len(trials) - 1:
            tune.report(result)  # the task's end: Tune needs nothing to restart it from
        else:
            _report_with_state(result, None, {"finished": finished, "training": None})


def _train(name, config, node_id, checkpoint, finished, report_every_seconds):
    """Trains one trial of the task; returns its outcome dict and its ``_Report``."""
    from tfnet import training

    lock = _take_over(config.run_dir)
    if lock is not None:  # else training refuses the directory, naming who holds it
        with lock:
            if checkpoint is not None:
                with checkpoint.as_directory() as state_dir:
                    _restore_state(state_dir, config.run_dir)
            elif not _has_checkpoint(config.run_dir):
                _empty(config.run_dir)
    report = _Report(name, config.run_dir, node_id, finished, report_every_seconds)
    outcome = dict(outcome="ok", error="")
    try:
        training.train(config, verbose=0, actions=[report])
    except Exception as error:  # noqa: BLE001 - the trial's own failure is its result
        kind = "diverged" if isinstance(error, training.NonFiniteError) else "failed"
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        outcome = dict(outcome=kind, error=f"{type(error).__name__}: {first_line}")
    return outcome, report


class _Report:
    """The action reporting the evaluated epochs of trial ``name`` to Tune: each at once when
    ``every_seconds`` is 0, else in batches at most that often; at once whenever the run's state
    changed (a new checkpoint), with that state."""

    def __init__(self, name, run_dir, node_id, finished, every_seconds=0.0):
        self.name = name
        self.run_dir = run_dir
        self.node_id = node_id
        self.finished = list(finished)
        self.every_seconds = every_seconds
        self.last = {key: float("nan") for key in EPOCH_KEYS}
        self.last["epoch"] = 0
        self._epochs = []  # evaluated since the last report
        self._reported_at = time.monotonic()
        self._reported_state = _checkpoint_state(run_dir)

    def __call__(self, metrics):
        from ray import tune

        self.last = {key: metrics[key] for key in EPOCH_KEYS}
        self._epochs.append(self.last)
        state = _checkpoint_state(self.run_dir)
        if state != self._reported_state:
            _report_with_state(self.result(), self.run_dir,
                               {"finished": self.finished, "training": self.name})
            self._reported_state = state
        elif time.monotonic() - self._reported_at >= self.every_seconds:
            tune.report(self.result())

    def result(self):
        """The next report: the last epoch's metrics, the epochs not reported yet (``"epochs"``),
        the trial and the node. Taking it counts them as reported."""
        result = {**self.last, "epochs": self._epochs, "trial": self.name,
                  "node_id": self.node_id}
        self._epochs = []
        self._reported_at = time.monotonic()
        return result


def _report_with_state(result, run_dir, task_state):
    """Reports ``result`` with a Tune checkpoint of ``task_state`` (``TASK_FILE``) and, if
    ``run_dir`` is given, the run's state."""
    from ray import tune

    staging = tempfile.mkdtemp(prefix="tfnet-trial-state-")
    try:
        if run_dir is not None:
            _copy_entries(run_dir, staging)
        with open(os.path.join(staging, TASK_FILE), "w") as f:
            json.dump(task_state, f)
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(staging))
    finally:
        # Tune copied it to its storage before report returned (or ended this thread).
        shutil.rmtree(staging, ignore_errors=True)


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
