"""Training: one compiled step, K steps per compiled call, and the host's actions between calls.

Factored like TF Model Garden's Orbit:

- ``step``: the cost J and the one training step (``make_train_step``), and the evaluation of a
  whole split in one compiled call (``make_evaluate``, ``make_evaluate_stream``);
- ``batches``: where each mini-batch comes from — the training split in memory, or streamed
  from disk — in each epoch's order;
- ``loop``: ``TrainLoop``, K steps per ``tf.function`` call (a ``tf.while_loop``, XLA where it
  applies);
- ``controller``: ``Controller``, which runs the loop K steps at a time (``StepsPerCall``) and
  calls the actions after each call;
- ``actions``: evaluation, early stopping, checkpoints, summaries, progress, signals, the NaN
  policy and the user's own actions, one small module each;
- ``trainer``: ``Trainer`` and ``train``, which assemble a run from a ``TrainConfig`` (and the
  user's model and data, if given);
- ``checkpointing``, ``recovery``, ``run_dir``, ``outputs``, ``events``, ``export``: the run's
  checkpointed state, restoring it past damaged checkpoints, its directory's lock and policy,
  its files and summaries, event pruning on resume, the atomic SavedModel export.

    from tfnet import config, training
    result = training.train(config.TrainConfig(dataset="moons", epochs=30))
    result = training.train(config.TrainConfig(epochs=10), model=my_model, data=my_splits)
"""

from tfnet.model import ModelError
from tfnet.training.actions import NonFiniteError, TrainingInterrupted
from tfnet.training.loop import XlaUnavailableError
from tfnet.training.step import cross_entropy
from tfnet.training.trainer import TrainResult, Trainer, train

__all__ = [
    "ModelError",
    "NonFiniteError",
    "TrainResult",
    "Trainer",
    "TrainingInterrupted",
    "XlaUnavailableError",
    "cross_entropy",
    "train",
]
