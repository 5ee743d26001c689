"""What a run writes into its ``model_dir`` besides checkpoints: files and TensorBoard summaries.

- ``flags.txt`` (the run's flags, for ``--flagfile``), ``config.json`` (written once, what
  ``tfnet.training.run_dir`` compares a resumed run with) and ``results.json`` (at the end);
- TensorBoard runs ``train/`` and ``dev/``: per evaluated epoch ``epoch_loss``,
  ``epoch_accuracy`` (both runs, so the curves overlay) and ``learning_rate``; histograms of
  every BatchNorm layer's running averages (and of all weights with ``histograms``); the
  mini-batch cost ``batch_cost`` at every logged step; the run's hyperparameters and metrics
  (dev and train accuracy and loss) on the HParams dashboard, in ``model_dir`` itself.

On resume, the events that a killed run logged after its restored checkpoint are pruned first
(``tfnet.training.events``), so that every step is shown once.
"""

import json
import os

import tensorflow as tf

from tfnet import layers
from tfnet.training import events


def metrics():
    """The HParams metrics of a run: ``epoch_accuracy`` and ``epoch_loss`` of its dev and train
    runs."""
    from tensorboard.plugins.hparams import api as hp

    return [hp.Metric(tag, group=group, display_name=f"{group} {tag[len('epoch_'):]}")
            for group in ("dev", "train") for tag in ("epoch_accuracy", "epoch_loss")]


class RunOutputs:
    """The run directory's files and summary writers (no-ops on non-chief workers)."""

    def __init__(self, config, run_dir, is_chief=True, identity=None):
        self.config = config
        self.identity = identity
        self.run_dir = run_dir
        self.is_chief = is_chief
        self.train_writer = self.dev_writer = tf.summary.create_noop_writer()

    def open(self, restored_step, fresh):
        """Writes the run's flags (and, for a fresh run, its config and hparams), prunes events
        logged after ``restored_step`` and opens the writers."""
        if not self.is_chief:
            return
        from tensorboard.plugins.hparams import api as hp  # tf.summary needs tensorboard.

        os.makedirs(self.run_dir, exist_ok=True)
        with open(os.path.join(self.run_dir, "flags.txt"), "w") as f:
            f.write(self.config.to_flags())
        if fresh:
            from tfnet.training import run_dir as run_dir_lib

            with open(os.path.join(self.run_dir, "config.json"), "w") as f:
                json.dump(run_dir_lib.saved_record(self.config, self.identity), f, indent=2)
        for name in ("train", "dev"):
            events.prune_events(os.path.join(self.run_dir, name), restored_step)
        self.train_writer = tf.summary.create_file_writer(os.path.join(self.run_dir, "train"))
        self.dev_writer = tf.summary.create_file_writer(os.path.join(self.run_dir, "dev"))
        if fresh:
            hparams = self.config.hparams()
            with tf.summary.create_file_writer(self.run_dir).as_default():
                # The experiment: the run's hyperparameters and its metrics, which TensorBoard
                # does not find by itself in the train/ and dev/ runs of a run opened alone.
                hp.hparams_config(hparams=[hp.HParam(name) for name in hparams],
                                  metrics=metrics())
                trial = os.path.basename(os.path.abspath(self.run_dir))
                hp.hparams(hparams, trial_id=trial)

    def log_batch_costs(self, logged):
        """``batch_cost`` at each ``(step, cost)`` of ``logged``."""
        if not logged:
            return
        with self.train_writer.as_default():
            for step, cost in logged:
                tf.summary.scalar("batch_cost", cost, step=step)

    def log_epoch(self, record, model):
        """One evaluated epoch's figures (``record``, see ``Controller``) at its global step."""
        step = record["step"]
        with self.train_writer.as_default(step=step):
            tf.summary.scalar("epoch_loss", record["train_loss"])
            tf.summary.scalar("epoch_accuracy", record["train_accuracy"])
            tf.summary.scalar("learning_rate", record["learning_rate"])
            if self.config.histograms:
                for variable in model.weights:
                    tf.summary.histogram(variable.path, variable)
            for layer in model.layers:  # BatchNorm's running averages, always.
                if isinstance(layer, layers.BatchNorm):
                    tf.summary.histogram(f"{layer.name}/moving_mean", layer.moving_mean)
                    tf.summary.histogram(f"{layer.name}/moving_variance", layer.moving_variance)
        with self.dev_writer.as_default(step=step):
            tf.summary.scalar("epoch_loss", record["dev_loss"])
            tf.summary.scalar("epoch_accuracy", record["dev_accuracy"])

    def flush(self):
        self.train_writer.flush()
        self.dev_writer.flush()

    def read_results(self):
        """The run's ``results.json``, or None when it has none (or it cannot be read)."""
        try:
            with open(os.path.join(self.run_dir, "results.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def write_results(self, results):
        if self.is_chief:
            with open(os.path.join(self.run_dir, "results.json"), "w") as f:
                json.dump(results, f, indent=2)
