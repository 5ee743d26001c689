"""The custom training loop: one compiled step with ``tf.GradientTape``, any Keras optimiser.

Each step minimises the cost of METHODS.md §3 on one mini-batch of the global batch:

    J = (1/m) Σ_i loss(x_i, y_i) + Σ model.losses       (L2 terms, (λ/2m) Σ‖W‖², if any)

where loss is the softmax cross-entropy from logits (METHODS.md §11). Under ``tf.distribute``
each replica divides its per-example losses by the *global* batch size m (all-reduced, so a
smaller last batch is averaged correctly) and its regularisation losses by the number of
replicas; the optimiser sums the replicas' gradients, which gives the gradient of J.

After every epoch the model is evaluated in inference mode on the whole training and dev splits
(loss and accuracy, to TensorBoard's ``train/`` and ``dev/`` runs); the test split is evaluated
once at the end, followed by a bias / variance diagnosis (METHODS.md §1).
"""

import dataclasses
import json
import os
import sys
import time

import keras
import tensorflow as tf

from tfnet import config as config_lib
from tfnet import data as data_lib
from tfnet import diagnosis
from tfnet import export as export_lib
from tfnet import model as model_lib
from tfnet import optimizers


@dataclasses.dataclass
class TrainResult:
    history: list  # One dict per epoch: epoch, train/dev loss and accuracy, learning_rate.
    test_loss: float
    test_accuracy: float
    run_dir: str
    export_path: str  # None when export is off.
    diagnosis: str
    model: keras.Model = dataclasses.field(repr=False)


def make_optimizer(config, steps_per_epoch):
    """The optimiser ``config.optimizer`` with the course hyperparameters it takes."""
    accepted = optimizers.HYPERPARAMETERS[config.optimizer]
    hyperparameters = {name: getattr(config, name) for name in accepted}
    return optimizers.get(config.optimizer, config.learning_rate, **hyperparameters)


def cross_entropy(labels, logits):
    """Per-example softmax cross-entropy from logits, −log ŷ_y via log-sum-exp."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


class Trainer:
    """Holds one run's model, optimiser, data and writers; ``run()`` trains and exports."""

    def __init__(self, config, strategy=None, verbose=None):
        self.config = config_lib.validate(config)
        self.strategy = strategy or tf.distribute.get_strategy()
        self.verbose = (1 if sys.stdout.isatty() else 2) if verbose is None else verbose
        self.run_dir = config.run_dir

        keras.utils.set_random_seed(config.seed)
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()

        self.splits = data_lib.load(config.dataset, config.data_dir, config.dev_fraction)
        self.train_split = self.splits.train.cache()
        info = self.splits.info
        self.steps_per_epoch = data_lib.steps_per_epoch(info.num_train, config.batch_size)
        mean, variance = data_lib.normalization_statistics(self.train_split)
        with self.strategy.scope():
            self.model = model_lib.build_model(
                info.input_shape, info.num_classes, config.hidden_units, mean, variance,
                activation=config.activation, seed=config.seed,
            )
            self.optimizer = make_optimizer(config, self.steps_per_epoch)
            self.optimizer.build(self.model.trainable_variables)
        self._train_step = self._make_train_step()
        self._evaluate_batch = tf.function(self._evaluate_batch_eager)

    # -- The compiled step -------------------------------------------------------------------

    def _make_train_step(self):
        model, optimizer, strategy = self.model, self.optimizer, self.strategy

        def replica_step(x, y):
            context = tf.distribute.get_replica_context()
            global_batch = context.all_reduce("sum", tf.cast(tf.shape(y)[0], tf.float32))
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                loss = tf.reduce_sum(cross_entropy(y, logits)) / global_batch
                regularization = tf.add_n(model.losses) if model.losses else 0.0
                cost = loss + regularization / context.num_replicas_in_sync
            gradients = tape.gradient(cost, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return cost

        @tf.function
        def train_step(batch):
            x, y = batch
            per_replica_cost = strategy.run(replica_step, args=(x, y))
            return strategy.reduce("sum", per_replica_cost, axis=None)

        return train_step

    def _evaluate_batch_eager(self, x, y):
        logits = self.model(x, training=False)
        correct = tf.equal(tf.argmax(logits, axis=-1), y)
        return tf.reduce_sum(cross_entropy(y, logits)), tf.reduce_sum(tf.cast(correct, tf.float32))

    def evaluate(self, split):
        """(cost, accuracy) of the model in inference mode over a whole split.

        The cost is the mean cross-entropy plus the regularisation terms, as in training.
        """
        total_loss, total_correct, count = 0.0, 0.0, 0
        for x, y in data_lib.eval_batches(split):
            loss, correct = self._evaluate_batch(x, y)
            total_loss += float(loss)
            total_correct += float(correct)
            count += int(y.shape[0])
        return total_loss / count, total_correct / count

    # -- The loop ------------------------------------------------------------------------------

    def _learning_rate(self):
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))

    def _open_writers(self):
        from tensorboard.plugins.hparams import api as hp  # tf.summary needs tensorboard.

        os.makedirs(self.run_dir, exist_ok=True)
        with open(os.path.join(self.run_dir, "flags.txt"), "w") as f:
            f.write(self.config.to_flags())
        self.train_writer = tf.summary.create_file_writer(os.path.join(self.run_dir, "train"))
        self.dev_writer = tf.summary.create_file_writer(os.path.join(self.run_dir, "dev"))
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
        with self.dev_writer.as_default(step=step):
            tf.summary.scalar("epoch_loss", record["dev_loss"])
            tf.summary.scalar("epoch_accuracy", record["dev_accuracy"])
        self.train_writer.flush()
        self.dev_writer.flush()

    def _say(self, text):
        if self.verbose:
            print(text, flush=True)

    def run(self):
        config = self.config
        self._open_writers()
        history = []
        step = 0
        for epoch in range(config.epochs):
            started = time.perf_counter()
            progress = keras.utils.Progbar(self.steps_per_epoch, verbose=1 if self.verbose == 1 else 0)
            batches = data_lib.train_batches(self.train_split, config.batch_size, config.seed, epoch)
            for batch in self.strategy.experimental_distribute_dataset(batches):
                cost = float(self._train_step(batch))
                step += 1
                if step % config.log_every_steps == 0:
                    with self.train_writer.as_default(step=step):
                        tf.summary.scalar("batch_cost", cost)
                progress.add(1, values=[("cost", cost)])
            train_loss, train_accuracy = self.evaluate(self.train_split)
            dev_loss, dev_accuracy = self.evaluate(self.splits.dev)
            record = dict(
                epoch=epoch + 1, step=step, train_loss=train_loss, train_accuracy=train_accuracy,
                dev_loss=dev_loss, dev_accuracy=dev_accuracy, learning_rate=self._learning_rate(),
                seconds=time.perf_counter() - started,
            )
            history.append(record)
            self._log_epoch(record, step)
            self._say(
                f"epoch {epoch + 1}/{config.epochs}: train loss {train_loss:.4f} acc "
                f"{train_accuracy:.4f} | dev loss {dev_loss:.4f} acc {dev_accuracy:.4f} "
                f"| lr {record['learning_rate']:.3g} | {record['seconds']:.1f}s"
            )
        return self._finish(history)

    def _finish(self, history):
        test_loss, test_accuracy = self.evaluate(self.splits.test)
        last = history[-1]
        verdict = diagnosis.diagnose(
            1 - last["train_accuracy"], 1 - last["dev_accuracy"], self.config.best_error
        )
        export_path = None
        if self.config.export:
            export_path = export_lib.export_model(
                self.model, self.config.export_dir, self.config.model_name
            )
        results = dict(
            last, epochs=len(history), test_loss=test_loss, test_accuracy=test_accuracy,
            best_dev_accuracy=max(r["dev_accuracy"] for r in history), diagnosis=verdict,
            export_path=export_path,
        )
        with open(os.path.join(self.run_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
        self._say(f"test loss {test_loss:.4f} acc {test_accuracy:.4f}")
        self._say(f"diagnosis: {verdict}")
        return TrainResult(history, test_loss, test_accuracy, self.run_dir, export_path, verdict,
                           self.model)


def train(config, strategy=None, verbose=None):
    """Trains, evaluates and exports one model as ``config`` says; returns a ``TrainResult``."""
    return Trainer(config, strategy=strategy, verbose=verbose).run()
