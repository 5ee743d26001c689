"""A run's checkpointed state: everything needed to resume bit for bit.

One ``tf.train.Checkpoint`` holds the model (weights and BatchNorm running averages), the
optimiser (slot variables and ``iterations``), the state of every layer's random seed generator
(dropout masks), and the position of the run: the global step g (the epoch is g div ⌈m/b⌉, the
mini-batch within it g mod ⌈m/b⌉), the best dev accuracy so far, the epochs without improvement,
and the history of evaluated epochs (as JSON). The data need no state of their own: each epoch's
order and augmentation are pure functions of (seed, epoch) (``tfnet.data.epoch_key``), so the
global step locates the next mini-batch exactly.
``tf.train.CheckpointManager`` writes each checkpoint to a temporary name and renames it when
complete, so a kill mid-write leaves the previous checkpoint as the latest. Restoring falls back
past damaged checkpoints, moving them aside (``tfnet.training.recovery``).
"""

import json
import os

import keras
import tensorflow as tf

from tfnet.training import recovery

# What to do when the best weights cannot be restored.
_BEST_LOST = ("The best weights are lost: resume with --early_stopping_patience=0 to train to "
              "--epochs and export the last weights instead.")


def seed_generators(model):
    """Every ``keras.random.SeedGenerator`` held by a layer of ``model`` (e.g. dropout's)."""
    found = []
    for layer in model._flatten_layers(include_self=True):
        found.extend(v for v in vars(layer).values() if isinstance(v, keras.random.SeedGenerator))
    return found


class RunState:
    """The checkpointed position of a run, with its checkpoint managers."""

    def __init__(self, model, optimizer, run_dir, keep_checkpoints, save_dir=None):
        """Checkpoints go to ``<save_dir or run_dir>/checkpoints``; restores read ``run_dir``'s.

        Under ``MultiWorkerMirroredStrategy`` every worker must save (saving may run collective
        ops), but only the chief's checkpoints are kept: the others pass a temporary
        ``save_dir``, and all of them restore from the chief's ``run_dir``.
        """
        self._restore_dir = os.path.join(run_dir, "checkpoints")
        self._save_dir = save_dir or run_dir
        self._owns_run_dir = save_dir is None  # it alone moves damaged files and cleans up
        self._keep_checkpoints = keep_checkpoints
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_dev_accuracy = tf.Variable(-1.0, dtype=tf.float64, trainable=False)
        self.epochs_without_improvement = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._history = tf.Variable("[]", dtype=tf.string, trainable=False)
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer,
            seed_states=[g.state for g in seed_generators(model)],
            global_step=self.global_step,
            best_dev_accuracy=self.best_dev_accuracy,
            epochs_without_improvement=self.epochs_without_improvement, history=self._history,
        )
        self._best_checkpoint = tf.train.Checkpoint(model=model)
        self._managers = None

    @property
    def manager(self):
        """The ``tf.train.CheckpointManager`` of ``checkpoints/``."""
        return self._open_managers()[0]

    @property
    def best(self):
        """The ``tf.train.CheckpointManager`` of ``best/`` (the best dev weights, one kept)."""
        return self._open_managers()[1]

    def _open_managers(self):
        # A manager reads its directory's state file once, when made: so they are made when
        # first used, and again after a restore, which may have rewritten the state files.
        if self._managers is None:
            self._managers = (
                tf.train.CheckpointManager(self.checkpoint,
                                           os.path.join(self._save_dir, "checkpoints"),
                                           max_to_keep=self._keep_checkpoints),
                tf.train.CheckpointManager(self._best_checkpoint,
                                           os.path.join(self._save_dir, "best"), max_to_keep=1),
            )
        return self._managers

    @property
    def history(self):
        return json.loads(self._history.numpy().decode())

    def append_history(self, record):
        self._history.assign(json.dumps(self.history + [record]))

    def restore_latest(self):
        """Restores the newest checkpoint that can be read, if any; returns its path or None.

        On the process that owns the run directory, the leftovers of writes killed midway are
        deleted first. A damaged checkpoint is skipped with a warning on stderr and (on that
        process) moved into ``checkpoints/damaged/`` (``recovery.restore_newest``).

        Raises:
          recovery.NoReadableCheckpointError: checkpoints are listed and none can be read.
        """
        if self._owns_run_dir:
            for name in ("checkpoints", "best"):
                recovery.remove_unfinished_writes(os.path.join(self._save_dir, name))
        path = recovery.restore_newest(
            self._restore_dir, self.checkpoint, move_aside=self._owns_run_dir,
            advice="Run the same command again to start over from step 0.",
        )
        self._managers = None
        return path

    def save(self):
        """Writes a checkpoint numbered by the global step; returns its path."""
        return self.manager.save(checkpoint_number=int(self.global_step.numpy()))

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def restore_best(self):
        """Loads the best weights saved so far into the model; returns their path or None.

        Damaged checkpoints in ``best/`` are skipped and moved aside as in ``restore_latest``.

        Raises:
          recovery.NoReadableCheckpointError: ``best/`` lists checkpoints and none can be read,
            or (on the process that owns the run directory) lists none although a best dev
            accuracy was recorded, because they were moved aside or deleted.
        """
        best_dir = os.path.join(self._save_dir, "best")
        path = recovery.restore_newest(best_dir, self._best_checkpoint, partial=True,
                                       move_aside=self._owns_run_dir, advice=_BEST_LOST)
        best_dev_accuracy = float(self.best_dev_accuracy.numpy())
        if path is None and self._owns_run_dir and best_dev_accuracy >= 0:
            raise recovery.NoReadableCheckpointError(
                f"{best_dir}: no checkpoint of the best weights, dev accuracy "
                f"{best_dev_accuracy:.4f} (moved aside or deleted). {_BEST_LOST}"
            )
        self._managers = None
        return path
