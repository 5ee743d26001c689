"""A run's checkpointed state: everything needed to resume bit for bit.

One ``tf.train.Checkpoint`` holds the model (weights and BatchNorm running averages), the
optimiser (slot variables and ``iterations``), the state of every layer's random seed generator
(dropout masks), and the position of the run: the global step g (the epoch is g div ⌈m/b⌉, the
mini-batch within it g mod ⌈m/b⌉), the best dev accuracy so far, the epochs without improvement,
and the history of evaluated epochs (as JSON). The data need no state of their own: each epoch's
order and augmentation are pure functions of (seed, epoch) (``tfnet.data.epoch_key``), so the
global step locates the next mini-batch exactly.
``tf.train.CheckpointManager`` writes each checkpoint to a temporary name and renames it when
complete, so a kill mid-write leaves the previous checkpoint as the latest.
"""

import json
import os

import keras
import tensorflow as tf


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
        save_dir = save_dir or run_dir
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(save_dir, "checkpoints"), max_to_keep=keep_checkpoints
        )
        self.best = tf.train.CheckpointManager(
            tf.train.Checkpoint(model=model), os.path.join(save_dir, "best"), max_to_keep=1
        )

    @property
    def history(self):
        return json.loads(self._history.numpy().decode())

    def append_history(self, record):
        self._history.assign(json.dumps(self.history + [record]))

    def restore_latest(self):
        """Restores the latest checkpoint, if any; returns its path or None."""
        path = tf.train.latest_checkpoint(self._restore_dir)
        if path:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        return path

    def save(self):
        """Writes a checkpoint numbered by the global step; returns its path."""
        return self.manager.save(checkpoint_number=int(self.global_step.numpy()))

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def restore_best(self):
        """Loads the best weights saved so far into the model; returns their path or None."""
        path = self.best.latest_checkpoint
        if path:
            self.best.checkpoint.restore(path).expect_partial()
        return path
