"""What a run does between loop calls, one action each (``tfnet.training.controller``).

In the order the trainer runs them after each call:

- ``StepsPerCall.action`` (in ``controller``): times the call, for the next K;
- ``NonFiniteGuard``: a stopped non-finite step raises ``NonFiniteError``; skipped ones are said;
- ``BatchCostSummaries``: the logged mini-batch costs to TensorBoard;
- ``Progress``: the progress bar (and the run's lines);
- ``Evaluation``: at an evaluated epoch's end, train and dev evaluated, recorded, logged;
  ``EarlyStopping`` listens to it (best weights, patience);
- ``StopOnSignal``: after SIGINT / SIGTERM, a checkpoint and ``TrainingInterrupted``;
- ``Checkpoints``: a checkpoint when one is due, and at the end;
- ``UserActions``: the user's callables, after each evaluation.
"""

from tfnet.training.actions.checkpoints import Checkpoints
from tfnet.training.actions.early_stopping import EarlyStopping
from tfnet.training.actions.evaluation import Evaluation
from tfnet.training.actions.nonfinite import NonFiniteError, NonFiniteGuard
from tfnet.training.actions.progress import Progress
from tfnet.training.actions.signals import StopOnSignal, StopSignals, TrainingInterrupted
from tfnet.training.actions.summaries import BatchCostSummaries
from tfnet.training.actions.user import UserActions

__all__ = [
    "BatchCostSummaries",
    "Checkpoints",
    "EarlyStopping",
    "Evaluation",
    "NonFiniteError",
    "NonFiniteGuard",
    "Progress",
    "StopOnSignal",
    "StopSignals",
    "TrainingInterrupted",
    "UserActions",
]
