"""The custom training loop: one compiled step with ``tf.GradientTape``, any Keras optimiser.

Each step minimises the cost of METHODS.md §3 on one mini-batch of the global batch:

    J = (1/m) Σ_i loss(x_i, y_i) + Σ_l (λ/2m) ‖W[l]‖²      (the L2 terms, if λ > 0)

where loss is the softmax cross-entropy from logits (METHODS.md §11). Under ``tf.distribute``
each replica divides its per-example losses by the *global* batch size m (all-reduced, so a
smaller last batch is averaged correctly) and its L2 cost, computed with that m, by the number of
replicas; the optimiser sums the replicas' gradients, which gives the gradient of J. The L2 cost
is ``tfnet.model.l2_cost`` of the kernels, not ``model.losses``: Keras keeps each layer's added
losses in one list that the replica threads share, and synchronized BatchNorm's all-reduce makes
the threads interleave in mid-forward pass, so one replica could read the other's terms.

After every epoch the model is evaluated in inference mode on the whole training and dev splits
(loss and accuracy, to TensorBoard's ``train/`` and ``dev/`` runs); the test split is evaluated
once at the end, followed by a bias / variance diagnosis (METHODS.md §1).

Nothing is lost (see ``tfnet.checkpointing``): a checkpoint every ``checkpoint_every_steps``
steps and at each epoch end; a run started on a ``model_dir`` with a checkpoint resumes from it,
bit for bit in deterministic mode, with its TensorBoard events pruned back to the restored step;
SIGINT / SIGTERM finish the current step, checkpoint and raise ``TrainingInterrupted``; a
non-finite cost or gradient is never applied (``on_nonfinite``: stop with ``NonFiniteError``,
leaving the last good checkpoint intact, or skip the step). The weights of the best dev epoch
(improving by more than ``early_stopping_min_delta``) are always kept in ``best/``; early stopping
is decided from the checkpointed count of epochs without improvement before each epoch (so a
restarted run that had stopped trains no further), and restores those weights before the test
evaluation, the diagnosis and the export.
"""

import dataclasses
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

import keras
import tensorflow as tf

from tfnet import checkpointing
from tfnet import config as config_lib
from tfnet import data as data_lib
from tfnet import diagnosis
from tfnet import distribute
from tfnet import events
from tfnet import export as export_lib
from tfnet import layers
from tfnet import model as model_lib
from tfnet import optimizers
from tfnet import paths
from tfnet import run_dir as run_dir_lib
from tfnet import schedules

class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped the run after a checkpoint; ``signal_number`` says which."""

    def __init__(self, message, signal_number):
        super().__init__(message)
        self.signal_number = signal_number


class NonFiniteError(Exception):
    """A non-finite cost or gradient stopped the run (``on_nonfinite="stop"``)."""


@dataclasses.dataclass
class TrainResult:
    history: list  # One dict per epoch: epoch, train/dev loss and accuracy, learning_rate.
    test_loss: float
    test_accuracy: float
    run_dir: str
    export_path: str  # None when export is off.
    diagnosis: str
    model: keras.Model = dataclasses.field(repr=False)


def make_learning_rate(config, steps_per_epoch):
    """α: a float, or the schedule ``config.lr_schedule`` with the decay arguments it takes."""
    decay = {name: getattr(config, name) for name in schedules.SCHEDULE_ARGUMENTS[config.lr_schedule]}
    if not decay.get("decay_interval", 1):
        del decay["decay_interval"]  # 0: inverse_time decays every step; step must be told.
    return schedules.get(config.lr_schedule, config.learning_rate, steps_per_epoch, **decay)


def make_optimizer(config, steps_per_epoch):
    """The optimiser ``config.optimizer`` with the course hyperparameters it takes."""
    accepted = optimizers.HYPERPARAMETERS[config.optimizer]
    hyperparameters = {name: getattr(config, name) for name in accepted}
    learning_rate = make_learning_rate(config, steps_per_epoch)
    return optimizers.get(config.optimizer, learning_rate, **hyperparameters)


def cross_entropy(labels, logits):
    """Per-example softmax cross-entropy from logits, −log ŷ_y via log-sum-exp."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


class Trainer:
    """Holds one run's model, optimiser, data, state and writers; ``run()`` trains and exports."""

    def __init__(self, config, strategy=None, verbose=None):
        self.config = config_lib.validate(config)
        self.verbose = (1 if sys.stdout.isatty() else 2) if verbose is None else verbose
        self.run_dir = config.run_dir
        paths.check_writable_dir(self.run_dir, "model_dir")
        if config.export:
            paths.check_writable_dir(config.export_dir, "export_dir")
        self.strategy = strategy or distribute.make_strategy(
            config.strategy, tpu=config.tpu, cpu_devices=config.cpu_devices
        )
        # Under multi-worker training only the chief writes; the others save their (required)
        # checkpoints to a scratch directory and log nothing.
        self.is_chief = distribute.is_chief(self.strategy)
        self._scratch_dir = None if self.is_chief else tempfile.mkdtemp(prefix="tfnet-worker-")
        if not self.is_chief:
            self.verbose = 0
        run_dir_lib.prepare(config, delete=self.is_chief)

        keras.utils.set_random_seed(config.seed)
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()

        self.splits = data_lib.load(config.dataset, config.data_dir, config.dev_fraction)
        self.train_split = self.splits.train.cache()
        info = self.splits.info
        self.steps_per_epoch = data_lib.steps_per_epoch(info.num_train, config.batch_size)
        mean, variance = data_lib.normalization_statistics(self.train_split)
        self.train_examples = data_lib.in_memory(self.train_split)  # what epochs are cut from
        self.augment = None
        if config.augment:
            from tfnet import augment as augment_lib

            self.augment = augment_lib.build(config.augment, info.input_shape)
        with self.strategy.scope():
            self.model = model_lib.build_model(
                info.input_shape, info.num_classes, config.hidden_units, mean, variance,
                activation=config.activation, initializer=config.initializer,
                batch_norm=config.batch_norm, bn_momentum=config.bn_momentum,
                bn_bias_correction=config.bn_bias_correction,
                bn_synchronized=config.bn_synchronized, keep_prob=config.keep_prob,
                l2=config.l2, seed=config.seed,
            )
            self.optimizer = make_optimizer(config, self.steps_per_epoch)
            self.optimizer.build(self.model.trainable_variables)
        # The run's position is per-process bookkeeping, not mirrored (and multi-worker
        # strategies cannot broadcast its string history).
        self.state = checkpointing.RunState(
            self.model, self.optimizer, self.run_dir, config.keep_checkpoints,
            save_dir=self._scratch_dir,
        )
        self._train_step = self._make_train_step()
        self._evaluate_batch = tf.function(self._evaluate_batch_eager)
        self._signal = None

    # -- The run directory ---------------------------------------------------------------------

    # -- The compiled steps --------------------------------------------------------------------

    def _make_train_step(self):
        model, optimizer, strategy = self.model, self.optimizer, self.strategy

        def replica_gradients(x, y):
            context = tf.distribute.get_replica_context()
            global_batch = context.all_reduce("sum", tf.cast(tf.shape(y)[0], tf.float32))
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                loss = tf.reduce_sum(cross_entropy(y, logits)) / global_batch
                regularization = model_lib.l2_cost(model, global_batch)
                cost = loss + regularization / context.num_replicas_in_sync
            gradients = tape.gradient(cost, model.trainable_variables)
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
            return cost, 1.0 - tf.cast(finite, tf.float32), gradients

        def replica_apply(gradients):
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))

        @tf.function
        def train_step(batch):
            """One update on one global mini-batch, applied only when cost and gradients are
            finite on every replica; returns (cost, finite)."""
            cost, nonfinite, gradients = strategy.run(replica_gradients, args=batch)
            cost = strategy.reduce("sum", cost, axis=None)
            finite = tf.logical_and(
                strategy.reduce("sum", nonfinite, axis=None) == 0, tf.math.is_finite(cost)
            )

            def apply():
                strategy.run(replica_apply, args=(gradients,))
                return tf.constant(True)

            # As in Keras' LossScaleOptimizer: the cond sits in cross-replica context, because
            # a replica-context cond cannot hold the optimiser's merge_call.
            tf.cond(finite, apply, lambda: tf.constant(False))
            return cost, finite

        return train_step

    def _evaluate_batch_eager(self, x, y):
        logits = self.model(x, training=False)
        correct = tf.equal(tf.argmax(logits, axis=-1), y)
        return tf.reduce_sum(cross_entropy(y, logits)), tf.reduce_sum(tf.cast(correct, tf.float32))

    def evaluate(self, split):
        """(loss, accuracy) of the model in inference mode over a whole split."""
        total_loss, total_correct, count = 0.0, 0.0, 0
        for x, y in data_lib.eval_batches(split):
            loss, correct = self._evaluate_batch(x, y)
            total_loss += float(loss)
            total_correct += float(correct)
            count += int(y.shape[0])
        return total_loss / count, total_correct / count

    # -- Logging -------------------------------------------------------------------------------

    def _learning_rate(self):
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))

    def _open_writers(self, fresh):
        from tensorboard.plugins.hparams import api as hp  # tf.summary needs tensorboard.

        if not self.is_chief:
            self.train_writer = self.dev_writer = tf.summary.create_noop_writer()
            return
        os.makedirs(self.run_dir, exist_ok=True)
        with open(os.path.join(self.run_dir, "flags.txt"), "w") as f:
            f.write(self.config.to_flags())
        if fresh:
            with open(os.path.join(self.run_dir, "config.json"), "w") as f:
                json.dump(dataclasses.asdict(self.config), f, indent=2)
        # Steps logged after the restored checkpoint by a killed run are logged again now.
        resumed_step = int(self.state.global_step.numpy())
        for name in ("train", "dev"):
            events.prune_events(os.path.join(self.run_dir, name), resumed_step)
        self.train_writer = tf.summary.create_file_writer(os.path.join(self.run_dir, "train"))
        self.dev_writer = tf.summary.create_file_writer(os.path.join(self.run_dir, "dev"))
        if fresh:
            with tf.summary.create_file_writer(self.run_dir).as_default():
                hp.hparams(self.config.hparams(), trial_id=os.path.basename(os.path.abspath(self.run_dir)))

    def _log_epoch(self, record, step):
        with self.train_writer.as_default(step=step):
            tf.summary.scalar("epoch_loss", record["train_loss"])
            tf.summary.scalar("epoch_accuracy", record["train_accuracy"])
            tf.summary.scalar("learning_rate", record["learning_rate"])
            if self.config.histograms:
                for variable in self.model.weights:
                    tf.summary.histogram(variable.path, variable)
            for layer in self.model.layers:  # BatchNorm's running averages, always.
                if isinstance(layer, layers.BatchNorm):
                    tf.summary.histogram(f"{layer.name}/moving_mean", layer.moving_mean)
                    tf.summary.histogram(f"{layer.name}/moving_variance", layer.moving_variance)
        with self.dev_writer.as_default(step=step):
            tf.summary.scalar("epoch_loss", record["dev_loss"])
            tf.summary.scalar("epoch_accuracy", record["dev_accuracy"])
        self.train_writer.flush()
        self.dev_writer.flush()

    def _say(self, text):
        if self.verbose:
            print(text, flush=True)

    # -- Signals -------------------------------------------------------------------------------

    def _on_signal(self, signal_number, frame):
        self._signal = signal_number

    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    # -- The loop ------------------------------------------------------------------------------

    def run(self):
        restored = self.state.restore_latest()
        self._open_writers(fresh=restored is None)
        if restored:
            self._say(f"resumed from {restored} (epoch {int(self.state.epoch.numpy()) + 1}, "
                      f"step {int(self.state.step_in_epoch.numpy())} of {self.steps_per_epoch})")
        previous_handlers = self._install_signal_handlers()
        try:
            stopped_early = self._train_epochs()
        finally:
            for number, handler in previous_handlers.items():
                signal.signal(number, handler)
            self.train_writer.flush()
            self.dev_writer.flush()
        return self._finish(stopped_early)

    def _patience_exhausted(self):
        patience = self.config.early_stopping_patience
        return bool(patience) and int(self.state.epochs_without_improvement.numpy()) >= patience

    def _train_epochs(self):
        """Trains from the state's position; returns True when early stopping ended the run.

        Early stopping is checked before each epoch, from the checkpointed state: a restarted run
        that had stopped early (or was killed while exporting) trains no further epoch.
        """
        config, state = self.config, self.state
        while int(state.epoch.numpy()) < config.epochs and not self._patience_exhausted():
            epoch = int(state.epoch.numpy())
            started = time.perf_counter()
            skip = int(state.step_in_epoch.numpy())
            progress = keras.utils.Progbar(self.steps_per_epoch, verbose=1 if self.verbose == 1 else 0)
            progress.update(skip)
            batches = data_lib.train_batches(
                self.train_examples, config.batch_size, config.seed, epoch, skip, self.augment
            )
            for batch in self.strategy.experimental_distribute_dataset(batches):
                cost = self._train_one_step(batch, epoch)
                progress.add(1, values=[("cost", cost)])
                self._checkpoint_if_due()
            self._end_epoch(epoch, started)
        if self._patience_exhausted():
            self._say(f"early stopping: no dev improvement for "
                      f"{int(state.epochs_without_improvement.numpy())} epochs; restoring the best "
                      f"weights (dev accuracy {float(state.best_dev_accuracy.numpy()):.4f})")
            return True
        return False

    def _train_one_step(self, batch, epoch):
        state, config = self.state, self.config
        cost, finite = self._train_step(batch)
        cost = float(cost)
        step = int(state.global_step.numpy()) + 1
        if not bool(finite) and config.on_nonfinite == "stop":
            raise NonFiniteError(
                f"non-finite cost or gradient (cost={cost}) at step {step} (epoch {epoch + 1}, "
                f"mini-batch {int(state.step_in_epoch.numpy()) + 1}); the update was not applied. "
                f"Last good checkpoint, left intact: {state.latest or 'none yet'}. Lower "
                "--learning_rate, or pass --on_nonfinite=skip_step to drop such updates."
            )
        elif not bool(finite):
            self._say(f"step {step}: non-finite cost or gradient (cost={cost}), update skipped")
        state.global_step.assign_add(1)
        state.step_in_epoch.assign_add(1)
        if step % config.log_every_steps == 0:
            with self.train_writer.as_default(step=step):
                tf.summary.scalar("batch_cost", cost)
        return cost

    def _checkpoint_if_due(self):
        state = self.state
        step_in_epoch = int(state.step_in_epoch.numpy())
        if self._signal is not None:
            path = self._save()
            name = signal.Signals(self._signal).name
            raise TrainingInterrupted(
                f"{name}: stopped after step {int(state.global_step.numpy())} (epoch "
                f"{int(state.epoch.numpy()) + 1}, mini-batch {step_in_epoch}); checkpoint {path}. "
                f"Resume with: python scripts/train.py --flagfile={os.path.join(self.run_dir, 'flags.txt')}",
                self._signal,
            )
        # The last step of an epoch is checkpointed by _end_epoch, after its summaries, so that
        # a checkpoint's step never has summaries logged after it.
        due = int(state.global_step.numpy()) % self.config.checkpoint_every_steps == 0
        if due and step_in_epoch < self.steps_per_epoch:
            self._save()

    def _save(self):
        self.train_writer.flush()
        self.dev_writer.flush()
        return self.state.save()

    def _end_epoch(self, epoch, started):
        """Evaluates, logs and checkpoints one finished epoch, saving its weights to ``best/``
        when its dev accuracy improves on the best by more than ``early_stopping_min_delta``."""
        config, state = self.config, self.state
        train_loss, train_accuracy = self.evaluate(self.train_split)
        dev_loss, dev_accuracy = self.evaluate(self.splits.dev)
        step = int(state.global_step.numpy())
        record = dict(
            epoch=epoch + 1, step=step, train_loss=train_loss, train_accuracy=train_accuracy,
            dev_loss=dev_loss, dev_accuracy=dev_accuracy, learning_rate=self._learning_rate(),
            seconds=time.perf_counter() - started,
        )
        state.append_history(record)
        self._log_epoch(record, step)
        self._say(
            f"epoch {epoch + 1}/{config.epochs}: train loss {train_loss:.4f} acc "
            f"{train_accuracy:.4f} | dev loss {dev_loss:.4f} acc {dev_accuracy:.4f} "
            f"| lr {record['learning_rate']:.3g} | {record['seconds']:.1f}s"
        )
        if dev_accuracy > float(state.best_dev_accuracy.numpy()) + config.early_stopping_min_delta:
            state.best_dev_accuracy.assign(dev_accuracy)
            state.epochs_without_improvement.assign(0)
            # Always, not only with early stopping on: a run resumed with a patience has them.
            state.best.save(checkpoint_number=step)
        else:
            state.epochs_without_improvement.assign_add(1)
        state.epoch.assign_add(1)
        state.step_in_epoch.assign(0)
        self._save()

    def _finish(self, stopped_early):
        config, history = self.config, self.state.history
        last = history[-1]
        if config.early_stopping_patience:
            # The exported model is the best one: its errors are evaluated again, not looked up.
            self.state.restore_best()
            _, train_accuracy = self.evaluate(self.train_split)
            final_dev_loss, final_dev_accuracy = self.evaluate(self.splits.dev)
        else:
            train_accuracy = last["train_accuracy"]
            final_dev_loss, final_dev_accuracy = last["dev_loss"], last["dev_accuracy"]
        test_loss, test_accuracy = self.evaluate(self.splits.test)
        verdict = diagnosis.diagnose(1 - train_accuracy, 1 - final_dev_accuracy, config.best_error)
        if not self.is_chief:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)
            return TrainResult(history, test_loss, test_accuracy, self.run_dir, None, verdict,
                               self.model)
        export_path = None
        if config.export:
            export_path = export_lib.export_model(self.model, config.export_dir, config.model_name)
        results = dict(
            last, epochs=len(history), test_loss=test_loss, test_accuracy=test_accuracy,
            # The state's best (the weights in best/), which min_delta decides: not max(history).
            best_dev_accuracy=float(self.state.best_dev_accuracy.numpy()), diagnosis=verdict,
            export_path=export_path, stopped_early=stopped_early,
            exported_dev_loss=final_dev_loss, exported_dev_accuracy=final_dev_accuracy,
            history=history,
        )
        with open(os.path.join(self.run_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
        self._say(f"test loss {test_loss:.4f} acc {test_accuracy:.4f}")
        self._say(f"diagnosis: {verdict}")
        return TrainResult(history, test_loss, test_accuracy, self.run_dir, export_path, verdict,
                           self.model)


def train(config, strategy=None, verbose=None):
    """Trains, evaluates and exports one model as ``config`` says; returns a ``TrainResult``.

    With ``config.deterministic``, TensorFlow's op determinism (a process-wide setting, which
    also turns Keras' XLA compilation off) is enabled for the run and restored afterwards.
    """
    # No public getter or disabler exists (tf.config.experimental only enables).
    from tensorflow.python.framework import config as tf_config

    determinism_was_enabled = tf_config.is_op_determinism_enabled()
    try:
        return Trainer(config, strategy=strategy, verbose=verbose).run()
    finally:
        if not determinism_was_enabled:
            tf_config.disable_op_determinism()
