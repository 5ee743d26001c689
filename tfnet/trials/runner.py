"""Running trials on Ray Tune: one Tune experiment over training runs, outcomes as they end.

``run(trials, tune_dir, cluster)`` trains the ``Trial``s in Ray Tune trials — *tasks*
(``worker.run_task``), each training ``cluster.trials_per_task`` of them one after another
(``take_task``), ``cluster.cpus_per_trial`` CPUs each, at most ``cluster.max_concurrent_trials`` at
once, in worker processes that Tune reuses from task to task — and calls ``on_outcome(outcome)``
in this process as each trial ends. ``on_outcome`` may return more trials, which join the same
experiment: Tune's search algorithm here is a queue (``_task_queue``) cutting each task from
the trials waiting when a slot asks for one, so the workers, TensorFlow imported, go on to them
(a study's seeds start as soon as a learning rate is chosen, not in a second experiment whose
workers import TensorFlow again). A task of several trials pays Tune's cost per Tune trial
(scheduling it, its end, its reports: ≈ 0.2 s of a worker's time, two cores) once for all of
them, which trials of a second or less feel. Tune's own files (its experiment state and each
running task's last checkpoint) are in ``tune_dir``, which must be on storage every node
reaches; they serve only while the experiment runs, and are deleted with it. Tune's failure
handling restarts a task whose worker or node died, up to ``MAX_RESTARTS`` times, from the last
state it reported: its finished trials are not trained again, the one it was training resumes.

Nothing of Tune reaches the terminal (no progress tables, no loggers writing their own results
and TensorBoard files): what the caller says about each outcome is the output.
"""

import contextlib
import dataclasses
import os
import shutil
import signal
import threading

from tfnet.trials import cluster as cluster_lib
from tfnet.trials import worker

# Restarts of a task whose worker or node died before Tune gives it up as failed.
MAX_RESTARTS = 3
# The automatic task size: as many trials as keep this many tasks per concurrent slot (so that
# the slots end together, give or take a task) ...
TASKS_PER_SLOT = 8
# ... and at most this many (Tune's cost per trial is then an eighth of what it was). Tasks
# shrink as the trials run out, each taking at most 1 / TAIL_TASKS of a slot's share of what
# remains (``take_task``).
MAX_TRIALS_PER_TASK = 8
TAIL_TASKS = 2
# Without a scheduler, a task reports its evaluated epochs together at most this often (and at
# once with a checkpoint or a trial's outcome): ``worker._Report``.
REPORT_EVERY_SECONDS = 1.0
# φ⁻¹ = (√5 − 1) / 2, the step of the golden-ratio order trials are dealt in (``take_task``).
_GOLDEN = 0.6180339887498949
# How Tune is run: trials keep the driver's working directory (their paths are absolute anyway);
# no CSV / JSON / TensorBoard loggers of Tune's own, no experiment table on the terminal (the
# new output engine prints one even at verbose=0), and no SIGINT handler of Tune's: SIGINT and
# SIGTERM stop the run here (_signals_stop). Each report is a round trip to the driver (Tune's
# result buffering, TUNE_RESULT_BUFFER_LENGTH > 1, is left off: in Ray 2.60 it hands its length
# and time to ``Trainable.train_buffered`` in each other's place, and once a batch holds several
# reports the driver registers the wrong checkpoints — two checkpoints reported back to back
# (a trial's outcome, then the next trial's at once) left one unregistered and one registered
# three times, deleting the latest from storage; one report per batch registers each once).
_TUNE_ENVIRONMENT = {"RAY_CHDIR_TO_TRIAL_DIR": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
                     "RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_SIGINT_HANDLER": "1",
                     "TUNE_RESULT_BUFFER_LENGTH": "1"}


class Interrupted(BaseException):
    """SIGINT or SIGTERM stopped the run (after Tune stopped its trials); ``signum`` says which.
    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it."""

    def __init__(self, signum):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


@dataclasses.dataclass(frozen=True)
class Trial:
    """One training run to make: ``name`` is unique among the trials of a ``run``."""

    name: str
    config: object  # a tfnet.config.TrainConfig


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What became of one trial.

    Attributes:
      name: the trial's name.
      status: "ok" (trained to the end: its run directory holds ``results.json``), "diverged"
        (a non-finite cost stopped it), "failed" (the run refused its configuration or data, or
        Ray lost its task more than ``MAX_RESTARTS`` times), or "stopped" (the scheduler stopped it).
      error: why it diverged or failed, in one line; "" otherwise.
      last: its last evaluated epoch as reported (``worker.EPOCH_KEYS``; epoch 0 and NaNs when
        it reported none).
      attempts: one dict per attempt that reported, in order: ``node_id``, the Ray node it ran
        on, and ``first_epoch``, the first epoch it reported (past 1 after a restart from a
        checkpoint).
    """

    name: str
    status: str
    error: str
    last: dict
    attempts: tuple

    @property
    def node_id(self):
        """The node of the last attempt, or None when no attempt reported."""
        return self.attempts[-1]["node_id"] if self.attempts else None


@dataclasses.dataclass(frozen=True)
class Asha:
    """Tune's ASHA scheduler (asynchronous successive halving; Li et al. 2020, arXiv:1810.05934)
    on a dev metric at the trials' evaluation points.

    Rungs are at ``grace_period · reduction_factor^k`` epochs, below the last epoch (stopping a
    trial there saves nothing, and would leave it without its results): a trial reaching a rung
    stops unless its metric is within the best ``1 / reduction_factor`` of those recorded at that
    rung so far (the first to arrive always goes on). A trial that goes past every rung trains
    to its end.

    Args:
      max_epochs: the trials' largest number of epochs, > ``grace_period``.
      metric: "dev_accuracy" or "dev_loss". Default "dev_accuracy".
      grace_period: epochs before a trial can be stopped, >= 1. Default 1.
      reduction_factor: η, > 1. Default 3.
    """

    max_epochs: int
    metric: str = "dev_accuracy"
    grace_period: int = 1
    reduction_factor: float = 3.0

    def __post_init__(self):
        from tfnet import config as config_lib

        if self.metric not in ("dev_accuracy", "dev_loss"):
            config_lib.fail("metric", "dev_accuracy or dev_loss for ASHA", self.metric)
        if (isinstance(self.grace_period, bool) or not isinstance(self.grace_period, int)
                or not 1 <= self.grace_period < self.max_epochs):
            config_lib.fail("asha_grace_period", "an integer from 1 to the epochs - 1 "
                            f"({self.max_epochs - 1}): ASHA stops trials before their last "
                            "epoch", self.grace_period)
        if not self.reduction_factor > 1:
            config_lib.fail("asha_reduction_factor", "> 1", self.reduction_factor)

    def make(self):
        from ray.tune.schedulers import ASHAScheduler

        # max_t is the last rung's bound: the epoch before the last, which no trial is stopped
        # for reaching (stop_last_trials=False).
        return ASHAScheduler(time_attr="epoch", metric=self.metric,
                             mode="max" if self.metric == "dev_accuracy" else "min",
                             max_t=self.max_epochs - 1, grace_period=self.grace_period,
                             reduction_factor=self.reduction_factor, stop_last_trials=False)


def run(trials, tune_dir, cluster=None, on_outcome=None, scheduler=None):
    """Runs ``trials`` on Ray Tune, and the trials ``on_outcome`` adds as they end; returns the
    ``Outcome``s of all of them, those of ``trials`` first, in the order given.

    Args:
      trials: ``Trial``s with distinct names. Their run directories must be on storage every
        node reaches (one machine: any).
      tune_dir: Tune's directory for this experiment (emptied first, deleted at the end).
      cluster: a ``cluster.ClusterConfig``; Ray is connected as it says unless it already is.
        Default: Ray on this machine, a CPU per task, the task size automatic.
      on_outcome: optional callable ``on_outcome(outcome)``, called in this process as each
        trial ends; it may return more ``Trial``s (names new), which join the same experiment:
        the workers, TensorFlow imported, go on to them (a study's seeds once a pair's
        learning rate is chosen).
      scheduler: optional ``Asha`` (each task is then one trial); default: every trial runs to
        its end.

    Raises:
      ValueError: ``cluster`` cannot be used (``check_task_size``, ``cluster.connect``), or a
        trial's name is not new.
      Interrupted: SIGINT or SIGTERM arrived (in the main thread) while trials ran, or whatever
        ``on_outcome`` raised: either way only once Tune has stopped the tasks still running,
        whose unfinished trials get no outcome (their run directories resume where their
        checkpoints are).
    """
    if not trials:
        return []
    names = _distinct([], trials)
    cluster = cluster or cluster_lib.ClusterConfig()
    check_task_size(cluster, scheduler)
    tune_dir = os.path.abspath(tune_dir)
    with cluster_lib.connect(cluster), _environment(_TUNE_ENVIRONMENT):
        from ray import tune

        from tfnet.trials.progress import Progress, Stop

        queue = _task_queue(trials, task_size(cluster, len(trials), scheduler),
                           None if cluster.trials_per_task else
                           cluster_lib.concurrent_tasks(cluster),
                           0.0 if scheduler else REPORT_EVERY_SECONDS)

        def outcome_then_more(outcome):
            more = list((on_outcome(outcome) if on_outcome else None) or ())
            _distinct(names, more)
            queue.add(more)

        stop = Stop()
        progress = Progress(stop, outcome_then_more)
        shutil.rmtree(tune_dir, ignore_errors=True)  # an experiment a killed search left
        tuner = tune.Tuner(
            tune.with_resources(worker.run_task, {"cpu": cluster.cpus_per_trial}),
            tune_config=tune.TuneConfig(
                search_alg=queue, num_samples=-1,  # until the queue says it is finished
                scheduler=scheduler.make() if scheduler else None,
                reuse_actors=True, max_concurrent_trials=cluster.max_concurrent_trials or None,
                trial_name_creator=_task_name, trial_dirname_creator=_task_name),
            run_config=tune.RunConfig(
                name=os.path.basename(tune_dir), storage_path=os.path.dirname(tune_dir),
                verbose=0, callbacks=[progress], stop=stop,
                failure_config=tune.FailureConfig(max_failures=MAX_RESTARTS),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
        try:
            with _signals_stop(stop):
                tuner.fit()
        finally:
            shutil.rmtree(tune_dir, ignore_errors=True)
    if stop.interruption is not None:
        raise stop.interruption
    missing = [name for name in names if name not in progress.outcomes]
    if missing:
        raise RuntimeError(f"Ray Tune ended without an outcome for trials {missing}")
    return [progress.outcomes[name] for name in names]


def _distinct(names, more):
    """Appends the names of the trials ``more`` to ``names`` (and returns it), or raises
    ValueError if one is not new."""
    added = [trial.name for trial in more]
    if len(set(names + added)) != len(names) + len(added):
        raise ValueError(f"trial names must be distinct. Received: {added}"
                         + (f" after {names}" if names else ""))
    names.extend(added)
    return names


def _task_queue(trials, size, slots, report_every_seconds):
    """A ``TaskQueue`` (Tune's Searcher, imported with Ray when a run starts) of ``trials``."""
    from ray.tune.search import Searcher

    class TaskQueue(Searcher):
        """Tune's search algorithm here: each Tune trial it suggests is the next task cut from
        the trials waiting (``take_task``), whose configuration carries them; ``add`` queues
        more while the experiment runs. It says the experiment is over once nothing waits and
        every task has ended."""

        def __init__(self, trials, size, slots, report_every_seconds):
            super().__init__()
            self.waiting = list(trials)
            self.size = size
            self.slots = slots
            self.report_every_seconds = report_every_seconds
            self.count = 0
            self.running = set()  # Tune trial ids of the tasks not ended

        def add(self, trials):
            self.waiting.extend(trials)

        def suggest(self, trial_id):
            if not self.waiting:
                return None if self.running else Searcher.FINISHED
            members, self.waiting = take_task(self.waiting, self.size, self.slots)
            self.running.add(trial_id)
            self.count += 1
            return {"task": f"task{self.count - 1:04d}",
                    "trials": [(trial.name, _with_absolute_paths(trial.config))
                               for trial in members],
                    "report_every_seconds": self.report_every_seconds}

        def on_trial_complete(self, trial_id, result=None, error=False):
            self.running.discard(trial_id)

        def save(self, checkpoint_path):
            pass  # a run resumes from tfnet's own records, never Tune's

        def restore(self, checkpoint_path):
            pass

    return TaskQueue(trials, size, slots, report_every_seconds)


def check_task_size(cluster, scheduler):
    """Raises ValueError when ``cluster.trials_per_task`` asks for tasks of several trials under
    a scheduler, which stops tasks, not trials."""
    if scheduler is not None and cluster.trials_per_task > 1:
        from tfnet import config as config_lib

        config_lib.fail("trials_per_task", "0 or 1 with a scheduler (ASHA stops a Ray Tune "
                        "trial, so each must be one of ours)", cluster.trials_per_task)


def task_size(cluster, count, scheduler=None):
    """The largest task for ``count`` trials: ``cluster.trials_per_task``, or when it is 0, 1 under
    a scheduler and otherwise ``count // (TASKS_PER_SLOT · slots)`` within [1,
    ``MAX_TRIALS_PER_TASK``], where slots is how many tasks the cluster runs at once."""
    if cluster.trials_per_task:
        return cluster.trials_per_task
    if scheduler is not None:
        return 1
    slots = cluster_lib.concurrent_tasks(cluster)
    return max(1, min(MAX_TRIALS_PER_TASK, count // (TASKS_PER_SLOT * slots)))


def take_task(waiting, size, slots=None):
    """The next task from the trials ``waiting`` (in the order Tune starts them), and the trials
    left: ``(task, rest)``.

    With ``slots`` (tasks running at once) the tasks shrink towards the end, guided
    self-scheduling (Polychronopoulos & Kuck, 1987): a task takes ``remaining // (TAIL_TASKS ·
    slots)`` of the trials not yet dealt, within [1, ``size``], so that the last tasks are single
    trials and no slot idles through a long last task of another (the tail of a study phase on
    two cores was one slot idle for a task of eight trials). Without ``slots`` every task is
    ``size`` (the last may be shorter): what ``--trials_per_task`` asks for.

    Tasks of several trials are cut from ``trials`` in golden-ratio order (trial i's place
    sorted by the fractional part of i·φ⁻¹; Weyl's sequence), whose every run of consecutive
    places spreads over the whole list: each task mixes the kinds of trials as the list does (a
    study lists its trials problem by problem), so tasks of one size take about as long as one
    another. Tasks of one trial keep the list's order: one at a time, trials run as listed.
    """
    order = list(range(len(waiting)))
    if size > 1:
        order.sort(key=lambda index: (index * _GOLDEN) % 1.0)
    take = size if slots is None else max(1, min(size, len(waiting) // (TAIL_TASKS * slots)))
    chosen = set(order[:take])
    return ([waiting[index] for index in order[:take]],
            [trial for index, trial in enumerate(waiting) if index not in chosen])


def _task_name(trial):
    return trial.config["task"]


def _with_absolute_paths(config):
    """``config`` with its directories absolute: a worker's working directory is not ours."""
    data_dir = config.data_dir and os.path.abspath(config.data_dir)
    return dataclasses.replace(config, model_dir=os.path.abspath(config.run_dir),
                               data_dir=data_dir)


@contextlib.contextmanager
def _signals_stop(stop):
    """While trials run, SIGINT and SIGTERM set ``stop.interruption`` (Tune then stops every
    trial and returns) instead of raising at whatever line of Tune the main thread is on; the
    previous handlers come back after. Outside the main thread, where handlers cannot be set,
    it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum, frame):
        stop.interruption = stop.interruption or Interrupted(signum)

    previous = {number: signal.signal(number, note) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def _environment(values):
    """Sets environment variables for the block, then puts back what was there."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
