"""A run's checkpointed state: everything needed to resume bit for bit.

One ``tf.train.Checkpoint`` holds the model (weights and BatchNorm running averages), the
optimiser (slot variables and ``iterations``), the state of every layer's random seed generator
(dropout masks), and the position of the run: the global step g (the epoch is g div ⌈m/b⌉, the
mini-batch within it g mod ⌈m/b⌉), early stopping's best dev accuracy and epochs without
improvement (``tfnet.training.actions.EarlyStopping``), and the history of evaluated epochs (as
JSON). The data need no state of their own: each epoch's order and augmentation are pure
functions of (seed, epoch) (``tfnet.data.order``), so the global step locates the next
mini-batch exactly, in memory or in a stream read from disk.
``tf.train.CheckpointManager`` writes each checkpoint to a temporary name and renames it when
complete, so a kill mid-write leaves the previous checkpoint as the latest. Restoring falls back
past damaged checkpoints, moving them aside (``tfnet.training.recovery``).
"""

import json
import os

import keras
import tensorflow as tf

from tfnet.training import recovery


def seed_generators(model):
    """Every ``keras.random.SeedGenerator`` held by a layer of ``model`` (e.g. dropout's)."""
    found = []
    for layer in model._flatten_layers(include_self=True):
        found.extend(v for v in vars(layer).values() if isinstance(v, keras.random.SeedGenerator))
    return found


class RunState:
    """The checkpointed position of a run, with its checkpoint managers."""

    def __init__(self, model, optimizer, run_dir, keep_checkpoints, save_dir=None, tracked=None):
        """Checkpoints go to ``<save_dir or run_dir>/checkpoints``; restores read ``run_dir``'s.
        ``tracked`` adds named objects to the checkpoint (early stopping's variables).

        Under ``MultiWorkerMirroredStrategy`` every worker must save (saving may run collective
        ops), but only the chief's checkpoints are kept: the others pass a temporary
        ``save_dir``, and all of them restore from the chief's ``run_dir``.
        """
        self._restore_dir = os.path.join(run_dir, "checkpoints")
        self._save_dir = save_dir or run_dir
        self._owns_run_dir = save_dir is None  # it alone moves damaged files and cleans up
        self._keep_checkpoints = keep_checkpoints
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._history = tf.Variable("[]", dtype=tf.string, trainable=False)
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer,
            seed_states=[g.state for g in seed_generators(model)],
            global_step=self.global_step, history=self._history, **(tracked or {}),
        )
        self._manager = None

    @property
    def manager(self):
        """The ``tf.train.CheckpointManager`` of ``checkpoints/``."""
        # A manager reads its directory's state file once, when made: so it is made when first
        # used, and again after a restore, which may have rewritten the state file.
        if self._manager is None:
            self._manager = tf.train.CheckpointManager(
                self.checkpoint, os.path.join(self._save_dir, "checkpoints"),
                max_to_keep=self._keep_checkpoints)
        return self._manager

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
            recovery.remove_unfinished_writes(os.path.join(self._save_dir, "checkpoints"))
        path = recovery.restore_newest(
            self._restore_dir, self.checkpoint, move_aside=self._owns_run_dir,
            advice="Run the same command again to start over from step 0.",
        )
        self._manager = None
        return path

    def save(self):
        """Writes a checkpoint numbered by the global step; returns its path."""
        return self.manager.save(checkpoint_number=int(self.global_step.numpy()))

    @property
    def latest(self):
        return self.manager.latest_checkpoint
