"""Early stopping: the best dev weights, and the epochs since the dev accuracy last improved.

After each evaluation the dev accuracy is compared with the best so far: above it by more than
``min_delta``, the weights are written to ``best/`` (always, not only with a patience: a run
resumed with one has them) and the count restarts; otherwise the epochs since the previous
evaluation are added to the epochs without improvement. With ``patience`` > 0 the run stops
before an epoch once that count reaches it — decided from the checkpointed count, so a rerun of
a run that stopped trains nothing — and the best weights are restored before the test
evaluation, the diagnosis and the export (docs/methods.md §3).
"""

import os

import tensorflow as tf

from tfnet.training import recovery

# What to do when the best weights cannot be restored.
_BEST_LOST = ("The best weights are lost: resume with --early_stopping_patience=0 to train to "
              "--epochs and export the last weights instead.")


class EarlyStopping:
    """The best dev accuracy and weights, and the patience.

    ``best_dev_accuracy`` and ``epochs_without_improvement`` are variables that the run's
    checkpoint holds (``trackables``); the best weights have a checkpoint directory of their own,
    ``<save_dir or run_dir>/best`` (one kept).

    Args:
      model: the model whose weights are kept.
      run_dir: the run directory (``best/`` is restored from it).
      patience: evaluations' epochs without improvement that stop the run; 0: never stops.
      min_delta: the smallest dev-accuracy increase that counts as an improvement.
      save_dir: where ``best/`` is written (a worker's scratch directory; default ``run_dir``).
    """

    def __init__(self, model, run_dir, patience, min_delta, save_dir=None):
        self.patience, self.min_delta = patience, min_delta
        self._restore_dir = os.path.join(run_dir, "best")
        self._save_dir = os.path.join(save_dir or run_dir, "best")
        self._owns_run_dir = save_dir is None
        self.best_dev_accuracy = tf.Variable(-1.0, dtype=tf.float64, trainable=False)
        self.epochs_without_improvement = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._checkpoint = tf.train.Checkpoint(model=model)
        self._manager = None

    @property
    def trackables(self):
        """What the run's checkpoint must hold of early stopping (names kept stable)."""
        return dict(best_dev_accuracy=self.best_dev_accuracy,
                    epochs_without_improvement=self.epochs_without_improvement)

    @property
    def manager(self):
        # Made when first used, and again after a restore, which may rewrite its state file.
        if self._manager is None:
            self._manager = tf.train.CheckpointManager(self._checkpoint, self._save_dir,
                                                       max_to_keep=1)
        return self._manager

    def __call__(self, record, epochs_since):
        """After an evaluation (an ``Evaluation`` listener): keep the weights, or count."""
        if record["dev_accuracy"] > float(self.best_dev_accuracy.numpy()) + self.min_delta:
            self.best_dev_accuracy.assign(record["dev_accuracy"])
            self.epochs_without_improvement.assign(0)
            self.manager.save(checkpoint_number=record["step"])
        else:
            self.epochs_without_improvement.assign_add(epochs_since)

    def exhausted(self):
        """Whether the patience is used up (never with patience 0)."""
        return bool(self.patience) and int(self.epochs_without_improvement.numpy()) >= self.patience

    def message(self):
        return (f"early stopping: no dev improvement for "
                f"{int(self.epochs_without_improvement.numpy())} epochs; restoring the best "
                f"weights (dev accuracy {float(self.best_dev_accuracy.numpy()):.4f})")

    def remove_unfinished_writes(self):
        if self._owns_run_dir:
            recovery.remove_unfinished_writes(self._save_dir)

    def restore_best(self):
        """Loads the best weights saved so far into the model; returns their path or None.

        Damaged checkpoints in ``best/`` are skipped and moved aside (``recovery``).

        Raises:
          recovery.NoReadableCheckpointError: ``best/`` lists checkpoints and none can be read,
            or (on the process that owns the run directory) lists none although a best dev
            accuracy was recorded, because they were moved aside or deleted.
        """
        path = recovery.restore_newest(self._restore_dir, self._checkpoint, partial=True,
                                       move_aside=self._owns_run_dir, advice=_BEST_LOST)
        best_dev_accuracy = float(self.best_dev_accuracy.numpy())
        if path is None and self._owns_run_dir and best_dev_accuracy >= 0:
            raise recovery.NoReadableCheckpointError(
                f"{self._restore_dir}: no checkpoint of the best weights, dev accuracy "
                f"{best_dev_accuracy:.4f} (moved aside or deleted). {_BEST_LOST}"
            )
        self._manager = None
        return path
