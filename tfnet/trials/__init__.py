"""The trial runner of the search and the study: tfnet runs as Ray Tune trials, on one machine or a cluster.

``run(trials, tune_dir, cluster)`` trains each ``Trial`` (a name and a ``TrainConfig``) with
``tfnet.training.train`` inside a Ray worker and returns each one's ``Outcome``: ok, diverged,
failed (with the reason) or stopped by the scheduler, and the nodes it ran on. Each Ray Tune
trial is a *task* training ``ClusterConfig.trials_per_task`` trials one after another (automatic
by default: one under a scheduler, up to eight for many short trials). What is guaranteed:

- **Where**: Ray on this machine by default, started for the run; a running cluster with
  ``ClusterConfig.ray_address`` (``cluster``). Each trial reserves ``cpus_per_trial`` CPUs; at
  most ``max_concurrent_trials`` run at once (0: as many as fit). Workers run the driver's tfnet.
- **Reporting**: after every evaluation a trial reports its epoch's train and dev loss and
  accuracy to Tune (so Tune's ASHA, ``Asha``, can stop it at a rung), with the run's state as
  its Tune checkpoint whenever tfnet has checkpointed since (``worker``).
- **Failures**: a task whose worker or node dies is restarted by Tune on a live node from the
  state it last reported: its finished trials are not trained again, and the trial it was
  training ends bit-identical to an uninterrupted run (with ``deterministic``); a trial's own
  failure (a diverged cost, a refused configuration) is its outcome, never retried.
- **Outputs**: each trial's run directory is an ordinary tfnet run (TensorBoard, ``flags.txt``,
  ``results.json``); callers build their records from it.

    from tfnet import trials
    outcomes = trials.run([trials.Trial("a", config)], "runs/x/tune")
"""

from tfnet.trials.cluster import ClusterConfig, connect
from tfnet.trials.runner import Asha, Interrupted, Outcome, Trial, check_task_size, run

__all__ = ["Asha", "ClusterConfig", "Interrupted", "Outcome", "Trial", "check_task_size",
           "connect", "run"]
