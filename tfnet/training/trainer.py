"""One training run, assembled: run directory, strategy, data, model, step, loop, actions.

``Trainer(config, model=None, data=None).run()`` builds what the config describes (through
``tfnet.build``, the one path from a config to objects) or takes the user's model and data,
resumes from the checkpoint in the run directory if there is one, trains with a ``Controller``
driving a ``TrainLoop`` of the one ``train_step`` and calling the run's actions between calls,
then evaluates the test split once, diagnoses bias and variance (docs/methods.md §1) and exports
a SavedModel. With early stopping on, the best dev weights are restored before the test
evaluation, the diagnosis and the export.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

from tfnet import build
from tfnet import config as config_lib
from tfnet import data as data_lib
from tfnet import diagnosis, distribute, paths
from tfnet import model as model_lib
from tfnet.training import actions as actions_lib
from tfnet.training import batches as batches_lib
from tfnet.training import checkpointing
from tfnet.training import export as export_lib
from tfnet.training import run_dir as run_dir_lib
from tfnet.training import step as step_lib
from tfnet.training import xla
from tfnet.training.controller import Controller, StepsPerCall
from tfnet.training.loop import TrainLoop
from tfnet.training.outputs import RunOutputs


@dataclasses.dataclass
class TrainResult:
    """What a run returns.

    Attributes:
      history: one dict per evaluated epoch: epoch, step, train/dev loss and accuracy,
        learning_rate (that of the next step) and seconds (since the previous evaluation).
      test_loss, test_accuracy: of the returned (exported) model on the test split; None with
        ``evaluate_test`` off.
      run_dir: the run's directory.
      export_path: the exported SavedModel's version directory; None when export is off.
      diagnosis: the bias / variance verdict, one line.
      seconds_per_step: the loop's steady-state time per step in this process (every call but
        the first, which compiles); None when it made fewer than two calls.
      model: the trained Keras model.
      train_loss, train_accuracy, dev_loss, dev_accuracy: the returned model's figures on the
        whole training and dev splits (the history's training figures are a subset's:
        ``train_eval_examples``).
    """

    history: list
    test_loss: float
    test_accuracy: float
    run_dir: str
    export_path: str
    diagnosis: str
    seconds_per_step: float = None
    model: keras.Model = dataclasses.field(default=None, repr=False)
    train_loss: float = None
    train_accuracy: float = None
    dev_loss: float = None
    dev_accuracy: float = None


def run_identity(model, data):
    """What names a user's model and data beside the config (None for the config's own): the
    model's class and weight shapes, or its factory's name; the data's name, sizes and shape."""
    if model is None and data is None:
        return None
    identity = {}
    if isinstance(model, keras.Model):
        identity["model"] = [type(model).__qualname__,
                             [list(w.shape) for w in model.weights] if model.built else None]
    elif model is not None:
        identity["model"] = f"{getattr(model, '__module__', '')}.{getattr(model, '__qualname__', model)}"
    if data is not None:
        info = data.info
        identity["data"] = [info.name, info.num_classes, list(info.input_shape), info.num_train,
                            info.num_dev, info.num_test, list(info.class_names)]
    return identity


def run_dir_of(config, identity):
    """``config.model_dir``, or ``runs/<dataset>-<optimizer>-<digest>`` of the config's result
    fields and the user's model and data (``run_identity``)."""
    if config.model_dir or identity is None:
        return config.run_dir
    name = identity.get("data", [config.dataset_name])[0]
    digest = hashlib.sha256(json.dumps([config.digest, identity], default=str).encode())
    return os.path.join("runs", f"{name}-{config.optimizer}-{digest.hexdigest()[:8]}")


def _check_mirrored(model, strategy):
    """Raises ``ModelError`` when a user's model built outside ``strategy``'s scope is to be
    trained on several replicas (its variables would not be mirrored)."""
    if strategy.num_replicas_in_sync > 1 and any(
            not isinstance(w.value, tf.distribute.DistributedValues) for w in model.weights):
        raise model_lib.ModelError(
            f"model must be built inside the strategy's scope to train on "
            f"{strategy.num_replicas_in_sync} replicas: pass a function model_fn(info) that builds "
            f"it (tfnet calls it there). Received: the built model {model.name!r}")


class Trainer:
    """Holds one run's model, optimiser, data, state and outputs; ``run()`` trains and exports.

    Made, it holds the lock of the run directory (on the chief, ``run_dir.prepare``) until
    ``close()`` or the end of the process.

    Args:
      config: a ``TrainConfig``.
      model: the user's model instead of the one ``config.model`` names: a ``keras.Model``
        whose outputs are the logits, or a factory ``model_fn(info) -> keras.Model`` (``info`` a
        ``tfnet.data.DatasetInfo`` with the training split's statistics), called inside the
        strategy's scope. Default: ``config.model``.
      data: the user's data instead of the dataset ``config.dataset`` names: ``tfnet.data.Splits``
        (``tfnet.data.from_arrays``, ``from_datasets``, ``load``). Default: ``config.dataset``.
      strategy: a ``tf.distribute`` strategy. Default: the one ``config.strategy`` names.
      verbose: 0 silent, 1 progress bar and a line per evaluated epoch, 2 the lines only.
        Default: 1 on a terminal, else 2.
      actions: callables run after each evaluation as ``action(metrics)`` (see ``train``).
    """

    def __init__(self, config, model=None, data=None, strategy=None, verbose=None, actions=()):
        config = config_lib.validate(config)
        if data is not None and not isinstance(data, data_lib.Splits):
            raise TypeError(f"data must be tfnet.data.Splits (tfnet.data.from_arrays, "
                            f"from_datasets or load). Received: {type(data).__name__}")
        if model is not None and not (isinstance(model, keras.Model) or callable(model)):
            raise TypeError(f"model must be a keras.Model or a function model_fn(info) returning "
                            f"one. Received: {type(model).__name__}")
        self._identity = identity = run_identity(model, data)
        self.run_dir = run_dir_of(config, identity)
        self.config = config = dataclasses.replace(config, model_dir=self.run_dir)
        self.verbose = (1 if sys.stdout.isatty() else 2) if verbose is None else verbose
        self.actions = tuple(actions)
        self._user_model, self._user_data = model, data
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
        self._run_lock = run_dir_lib.prepare(config, chief=self.is_chief, identity=identity)
        try:
            self._build(config)
        except BaseException:
            self.close()  # a run that cannot start leaves no lock held
            raise

    def _build(self, config):
        """Seeds, data, model, optimiser, state, loop and outputs (the lock is held)."""
        keras.utils.set_random_seed(config.seed)
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        splits = self._user_data if self._user_data is not None else build.data(config)
        # Placed in memory or streamed, and checked (BadDataError), before anything is computed.
        self.data = build.prepared_data(config, splits)
        self.info = info = self.data.info
        for line in (self.data.summary, *info.notes):
            self._say(line)
        self.steps_per_epoch = data_lib.steps_per_epoch(info.num_train, config.batch_size)
        augment = None
        if config.augment:
            from tfnet import augment as augment_lib

            augment = augment_lib.build(config.augment, info.input_shape)
        with self.strategy.scope():
            if self._user_model is None:
                self.model = build.model(config, info)
            else:
                self.model = build.user_model(self._user_model, info)
                _check_mirrored(self.model, self.strategy)
                model_lib.check_classifier(self.model, info.input_shape, info.num_classes)
            self.optimizer = build.optimizer(config, self.steps_per_epoch)
            self.optimizer.build(self.model.trainable_variables)
        self.early_stopping = actions_lib.EarlyStopping(
            self.model, self.run_dir, config.early_stopping_patience,
            config.early_stopping_min_delta, save_dir=self._scratch_dir)
        # The run's position is per-process bookkeeping, not mirrored (and multi-worker
        # strategies cannot broadcast its string history).
        self.state = checkpointing.RunState(
            self.model, self.optimizer, self.run_dir, config.keep_checkpoints,
            save_dir=self._scratch_dir, tracked=self.early_stopping.trackables,
        )
        self.jit_compile = xla.use_xla(config, self.strategy, config.epochs * self.steps_per_epoch,
                                       self.model)
        self.loop = TrainLoop(
            step_lib.make_train_step(self.model, self.optimizer, self.strategy),
            self._batches(config), config.seed, self.state.global_step,
            augment=augment, stop_on_nonfinite=config.on_nonfinite == "stop",
            log_every_steps=config.log_every_steps, strategy=self.strategy,
            jit_compile=self.jit_compile, xla_fallback=None if config.jit_compile == "on" else (
                lambda reason: self._say(f"XLA cannot compile this run's training step ({reason}):"
                                         " training without it")),
        )
        self._evaluate_examples = step_lib.make_evaluate(self.model)
        self._evaluate_stream = step_lib.make_evaluate_stream(self.model)
        self.train_subset = self._train_subset(config)  # what the history evaluates of train
        self._held = dict(self.data.splits, train_subset=self.train_subset)
        self.outputs = RunOutputs(config, self.run_dir, self.is_chief, self._identity)

    def _batches(self, config):
        train = self.data.splits["train"]
        if self.data.in_memory("train"):
            return batches_lib.MemoryBatches(train, config.seed, config.batch_size, self.strategy)
        return batches_lib.StreamBatches(train, config.seed, config.batch_size, self.strategy)

    def _train_subset(self, config):
        """The training examples evaluated after each evaluated epoch: ``train_eval_examples``
        of them (0: as many as dev), drawn once from a generator seeded by the run's seed, in
        the split's order; the whole split when that is all of it."""
        train = self.data.splits["train"]
        m = self.info.num_train
        count = min(config.train_eval_examples or self.info.num_dev, m)
        if count >= m:
            return train
        chosen = np.sort(np.random.default_rng([config.seed, 1]).permutation(m)[:count])
        if isinstance(train, data_lib.Examples):
            return data_lib.Examples(*(tf.gather(t, chosen) for t in train))
        return train.subset(chosen)

    def evaluate(self, *splits):
        """``[(loss, accuracy), ...]`` of the model in inference mode on each of ``splits``
        ("train", "dev", "test", or "train_subset": the examples the history evaluates); those
        in memory in one compiled call, each streamed one in a call of its own."""
        held = [self._held[name] for name in splits]
        in_memory = [h for h in held if isinstance(h, data_lib.Examples)]
        figures = iter(self._evaluate_examples(*in_memory) if in_memory else ())
        results = []
        for split in held:
            if isinstance(split, data_lib.Examples):
                loss, accuracy = next(figures)
            else:
                loss, accuracy = self._evaluate_stream(split.batches().prefetch(2))
            results.append((float(loss), float(accuracy)))
        return results

    def _say(self, text):
        if self.verbose:
            print(text, flush=True)

    def finished(self):
        """Whether nothing is left to train: every epoch done, or early stopping's patience used."""
        return (int(self.state.global_step.numpy()) >= self.config.epochs * self.steps_per_epoch
                or self.early_stopping.exhausted())

    def _controller(self):
        """The controller and the run's actions, in the order they run after each call."""
        config = self.config
        total_steps = config.epochs * self.steps_per_epoch
        progress = actions_lib.Progress(self.verbose, None)
        evaluation = actions_lib.Evaluation(
            lambda: dict(zip(("train", "dev"), self.evaluate("train_subset", "dev"))),
            self.state, self.outputs, self.model, self.optimizer, config.epochs,
            config.eval_every_epochs, self.steps_per_epoch, progress.say,
            listeners=[self.early_stopping])
        progress.next_evaluation_step = evaluation.next_evaluation_step
        checkpoints = actions_lib.Checkpoints(self.state, self.outputs,
                                              config.checkpoint_every_steps,
                                              config.checkpoint_every_seconds)
        self.steps_per_call = StepsPerCall(total_steps, evaluation, config.checkpoint_every_steps,
                                           config.steps_per_loop, self.loop.max_steps_per_call)
        actions = [
            self.steps_per_call.action,
            actions_lib.NonFiniteGuard(config.on_nonfinite, self.steps_per_epoch,
                                       lambda: self.state.latest, self.outputs.flush, progress.say),
            actions_lib.BatchCostSummaries(self.outputs),
            progress,
            evaluation,
            actions_lib.StopOnSignal(checkpoints, self.steps_per_epoch, self.run_dir),
            checkpoints,
            actions_lib.UserActions(evaluation, self.actions, self.run_dir),
        ]
        return Controller(self.loop, total_steps, self.steps_per_call, actions,
                          stop_when=self.early_stopping.exhausted)

    def run(self):
        """Trains (resuming if ``run_dir`` holds a checkpoint), then finishes; returns a
        ``TrainResult``. A run that had finished (its results written for the checkpointed
        state, nothing left to train) is only reported: nothing is trained, written or exported."""
        self.early_stopping.remove_unfinished_writes()
        restored = self.state.restore_latest()
        position = int(self.state.global_step.numpy())
        previous = self.outputs.read_results() if restored else None
        if (previous and previous.get("history") == self.state.history and self.finished()
                and previous.get("finished_with") == self._finish_settings()):
            return self._report_finished(previous)
        self.outputs.open(restored_step=position, fresh=restored is None)
        if restored:
            epoch, batch = divmod(position, self.steps_per_epoch)
            self._say(f"resumed from {restored} (epoch {epoch + 1}, step {batch} of "
                      f"{self.steps_per_epoch})")
        controller = self._controller()
        try:
            stopped_early = controller.run()
        finally:
            self.outputs.flush()
        if stopped_early:
            self._say(self.early_stopping.message())
        return self._finish(stopped_early, self.steps_per_call.steady_seconds_per_step)

    def _finish_settings(self):
        """The settings that decide how a trained run is finished (evaluated, exported): a run
        rerun with other ones is finished again, not only reported."""
        return {name: getattr(self.config, name) for name in sorted(config_lib.FINISH_FIELDS)}

    def _report_finished(self, results):
        self._say(f"already finished: {self.run_dir} (epoch {results['epoch']}/{self.config.epochs}"
                  f"{', stopped early' if results['stopped_early'] else ''}); nothing trained, "
                  "written or exported")
        if results["test_accuracy"] is not None:
            self._say(f"test loss {results['test_loss']:.4f} acc {results['test_accuracy']:.4f}")
        self._say(f"diagnosis: {results['diagnosis']}")
        return TrainResult(results["history"], results["test_loss"], results["test_accuracy"],
                           self.run_dir, results["export_path"], results["diagnosis"], None,
                           self.model, results["train_loss"], results["train_accuracy"],
                           results["exported_dev_loss"], results["exported_dev_accuracy"])

    def close(self):
        """Releases the run directory's lock (which the end of the process releases too)."""
        if self._run_lock is not None:
            self._run_lock.release()

    def _finish(self, stopped_early, seconds_per_step):
        config, history = self.config, self.state.history
        last = history[-1]
        if config.early_stopping_patience:
            # The exported model is the best one: its errors are evaluated again, not looked up.
            self.early_stopping.restore_best()
        # The returned model's figures on the whole splits (the history's train figures are a
        # subset's; dev is evaluated again only after restoring the best weights).
        finals = ["train", "dev"] if config.early_stopping_patience else ["train"]
        figures = dict(zip(finals + ["test"] * config.evaluate_test,
                           self.evaluate(*finals, *["test"] * config.evaluate_test)))
        train_loss, train_accuracy = figures["train"]
        final_dev_loss, final_dev_accuracy = figures.get("dev", (last["dev_loss"],
                                                                 last["dev_accuracy"]))
        test_loss, test_accuracy = figures.get("test", (None, None))
        verdict = diagnosis.diagnose(1 - train_accuracy, 1 - final_dev_accuracy, config.best_error)
        result = TrainResult(history, test_loss, test_accuracy, self.run_dir, None, verdict,
                             seconds_per_step, self.model, train_loss, train_accuracy,
                             final_dev_loss, final_dev_accuracy)
        if not self.is_chief:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)
            return result
        if config.export:
            result.export_path = export_lib.export_model(self.model, config.export_dir,
                                                         config.model_name, self.info.input_shape)
        self.outputs.write_results(dict(
            last, epochs=len(history), test_loss=test_loss, test_accuracy=test_accuracy,
            train_loss=train_loss, train_accuracy=train_accuracy,
            # The best kept (the weights in best/), which min_delta decides: not max(history).
            best_dev_accuracy=float(self.early_stopping.best_dev_accuracy.numpy()),
            diagnosis=verdict, export_path=result.export_path, stopped_early=stopped_early,
            exported_dev_loss=final_dev_loss, exported_dev_accuracy=final_dev_accuracy,
            jit_compile=self.loop.jit_compile, finished_with=self._finish_settings(),
            history=history,
        ))
        if config.evaluate_test:
            self._say(f"test loss {test_loss:.4f} acc {test_accuracy:.4f}")
        self._say(f"diagnosis: {verdict}")
        return result


def train(config, model=None, data=None, strategy=None, verbose=None, actions=()):
    """Trains, evaluates and exports one model as ``config`` says; returns a ``TrainResult``.

    Args:
      config: a ``tfnet.config.TrainConfig``.
      model: a user's ``keras.Model`` (outputs: logits) or factory ``model_fn(info)``; default
        the model ``config.model`` names (see ``Trainer``).
      data: a user's ``tfnet.data.Splits``; default the dataset ``config.dataset`` names.
      strategy, verbose: see ``Trainer``.
      actions: callables run after each evaluation as ``action(metrics)`` (the epoch's history
        record: epoch, step, train and dev loss and accuracy, learning_rate, seconds, and
        ``run_dir``), after the checkpoint due at that step, if any.

    With ``config.deterministic``, TensorFlow's op determinism (a process-wide setting) is
    enabled for the run and restored afterwards.
    """
    # No public getter or disabler exists (tf.config.experimental only enables).
    from tensorflow.python.framework import config as tf_config

    determinism_was_enabled = tf_config.is_op_determinism_enabled()
    try:
        trainer = Trainer(config, model=model, data=data, strategy=strategy, verbose=verbose,
                          actions=actions)
        try:
            return trainer.run()
        finally:
            trainer.close()
    finally:
        if not determinism_was_enabled:
            tf_config.disable_op_determinism()
