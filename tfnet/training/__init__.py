"""Training: one compiled step, K steps per compiled call, and the host's work between calls.

Factored like TF Model Garden's Orbit:

- ``step``: the cost J and the one training step (``make_train_step``), and the evaluation of a
  whole split in one compiled call (``make_evaluate``);
- ``loop``: ``TrainLoop``, K steps per ``tf.function`` call (a ``tf.while_loop``, XLA where it
  applies), the mini-batches cut from the training split in memory inside the call;
- ``controller``: ``Controller``, what happens between calls — evaluation, TensorBoard,
  checkpoints, SIGINT / SIGTERM, the NaN policy, early stopping;
- ``trainer``: ``Trainer`` and ``train``, which assemble a run from a ``TrainConfig``;
- ``checkpointing``, ``recovery``, ``run_dir``, ``outputs``, ``events``, ``export``, ``signals``:
  the run's checkpointed state, restoring it past damaged checkpoints, its directory's lock and
  policy, its files and summaries, event pruning on resume, the atomic SavedModel export, and
  the signal flag.

    from tfnet import config, training
    result = training.train(config.TrainConfig(dataset="moons", epochs=30))
"""

from tfnet.training.controller import NonFiniteError
from tfnet.training.signals import TrainingInterrupted
from tfnet.training.step import cross_entropy
from tfnet.training.trainer import (
    TrainResult,
    Trainer,
    make_learning_rate,
    make_optimizer,
    train,
)

__all__ = [
    "NonFiniteError",
    "TrainResult",
    "Trainer",
    "TrainingInterrupted",
    "cross_entropy",
    "make_learning_rate",
    "make_optimizer",
    "train",
]
