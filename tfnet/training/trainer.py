"""One training run, assembled: run directory, strategy, data, model, step, loop, controller.

``Trainer(config).run()`` builds everything a ``TrainConfig`` describes, resumes from the
checkpoint in ``config.run_dir`` if there is one, trains with a ``Controller`` driving a
``TrainLoop`` of the one ``train_step``, then evaluates the test split once, diagnoses bias and
variance (docs/methods.md §1) and exports a SavedModel. With early stopping on, the best dev
weights are restored before the test evaluation, the diagnosis and the export.
"""

import dataclasses
import shutil
import sys
import tempfile

import keras
import tensorflow as tf

from tfnet import config as config_lib
from tfnet import data as data_lib
from tfnet import diagnosis
from tfnet import distribute
from tfnet import model as model_lib
from tfnet import optimizers
from tfnet import paths
from tfnet import schedules
from tfnet.training import checkpointing
from tfnet.training import export as export_lib
from tfnet.training import run_dir as run_dir_lib
from tfnet.training import step as step_lib
from tfnet.training.controller import Controller
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
    """

    history: list
    test_loss: float
    test_accuracy: float
    run_dir: str
    export_path: str
    diagnosis: str
    seconds_per_step: float = None
    model: keras.Model = dataclasses.field(default=None, repr=False)


def make_learning_rate(config, steps_per_epoch):
    """α: a float, or the schedule ``config.lr_schedule`` with the decay arguments it takes;
    α₀ is ``config.learning_rate``, or the optimiser's default learning rate when it is None."""
    decay = {name: getattr(config, name) for name in schedules.SCHEDULE_ARGUMENTS[config.lr_schedule]}
    if not decay.get("decay_interval", 1):
        del decay["decay_interval"]  # 0: inverse_time decays every step; step must be told.
    return schedules.get(config.lr_schedule, config.effective_learning_rate, steps_per_epoch,
                         **decay)


def make_optimizer(config, steps_per_epoch):
    """The optimiser ``config.optimizer`` with the course hyperparameters it takes."""
    accepted = optimizers.RECORDS[config.optimizer].hyperparameters
    hyperparameters = {name: getattr(config, name) for name in accepted}
    learning_rate = make_learning_rate(config, steps_per_epoch)
    return optimizers.get(config.optimizer, learning_rate, **hyperparameters)


def build_model(config, info, mean, variance):
    """The classifier ``config`` describes, for data described by ``info``."""
    return model_lib.build_model(
        info.input_shape, info.num_classes, config.hidden_units, mean, variance,
        activation=config.activation, initializer=config.initializer,
        batch_norm=config.batch_norm, bn_momentum=config.bn_momentum,
        bn_bias_correction=config.bn_bias_correction, bn_synchronized=config.bn_synchronized,
        keep_prob=config.keep_prob, l2=config.l2, seed=config.seed,
    )


# The settings of how a trained run is finished (see Trainer.run).
FINISH_SETTINGS = ("export", "export_dir", "export_name", "early_stopping_patience",
                   "early_stopping_min_delta", "best_error", "evaluate_test")

# With --jit_compile=auto, XLA compiles the loop of runs of at least this many steps: compiling
# costs 1-5 s on this project's 2-core CPU and saves 0.1-0.6 ms per step on its networks, so a
# shorter run finishes sooner without it.
XLA_MIN_STEPS = 5000


def use_xla(config, strategy, total_steps):
    """Whether the training loop is compiled with XLA: ``jit_compile`` "on", or "auto" for a run
    of at least ``XLA_MIN_STEPS`` steps on one device (not under a distribution strategy) when
    every augmentation has an XLA kernel."""
    if config.jit_compile == "off":
        return False
    if config.jit_compile == "on":
        return True
    from tfnet import augment as augment_lib

    one_device = strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy()
    return (one_device and strategy.num_replicas_in_sync == 1 and total_steps >= XLA_MIN_STEPS
            and (not config.augment or augment_lib.compiles_with_xla(config.augment)))


class Trainer:
    """Holds one run's model, optimiser, data, state and outputs; ``run()`` trains and exports.

    Made, it holds the lock of the run directory (on the chief, ``run_dir.prepare``) until
    ``close()`` or the end of the process.

    Args:
      config: a ``TrainConfig``.
      strategy: a ``tf.distribute`` strategy. Default: the one ``config.strategy`` names.
      verbose: 0 silent, 1 progress bar and a line per evaluated epoch, 2 the lines only.
        Default: 1 on a terminal, else 2.
      actions: callables run after each evaluation as ``action(metrics)`` (see ``train``).
    """

    def __init__(self, config, strategy=None, verbose=None, actions=()):
        self.config = config_lib.validate(config)
        self.actions = tuple(actions)
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
        self._run_lock = run_dir_lib.prepare(config, chief=self.is_chief)  # held to close()
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

        splits = data_lib.load(config.dataset, config.data_dir, config.dev_fraction,
                               num_examples=config.num_examples)
        train = splits.train.cache()
        # In memory and checked (BadDataError) before anything is computed from them.
        self.examples = data_lib.in_memory_splits(
            {"train": train, "dev": splits.dev, "test": splits.test}, splits.info)
        mean, variance = data_lib.normalization_statistics(train)
        self.steps_per_epoch = data_lib.steps_per_epoch(splits.info.num_train, config.batch_size)
        augment = None
        if config.augment:
            from tfnet import augment as augment_lib

            augment = augment_lib.build(config.augment, splits.info.input_shape)
        with self.strategy.scope():
            self.model = build_model(config, splits.info, mean, variance)
            self.optimizer = make_optimizer(config, self.steps_per_epoch)
            self.optimizer.build(self.model.trainable_variables)
        # The run's position is per-process bookkeeping, not mirrored (and multi-worker
        # strategies cannot broadcast its string history).
        self.state = checkpointing.RunState(
            self.model, self.optimizer, self.run_dir, config.keep_checkpoints,
            save_dir=self._scratch_dir,
        )
        self.jit_compile = use_xla(config, self.strategy, config.epochs * self.steps_per_epoch)
        self.loop = TrainLoop(
            step_lib.make_train_step(self.model, self.optimizer, self.strategy),
            self.examples["train"], config.batch_size, config.seed, self.state.global_step,
            augment=augment, stop_on_nonfinite=config.on_nonfinite == "stop",
            log_every_steps=config.log_every_steps, strategy=self.strategy,
            jit_compile=self.jit_compile,
        )
        self._evaluate = step_lib.make_evaluate(self.model)
        self.outputs = RunOutputs(config, self.run_dir, self.is_chief)

    def evaluate(self, split):
        """(loss, accuracy) of the model in inference mode on "train", "dev" or "test"."""
        loss, accuracy = self._evaluate(*self.examples[split])
        return float(loss), float(accuracy)

    def run(self):
        """Trains (resuming if ``run_dir`` holds a checkpoint), then finishes; returns a
        ``TrainResult``. A run that had finished (its results written for the checkpointed
        state, nothing left to train) is only reported: nothing is trained, written or exported."""
        restored = self.state.restore_latest()
        position = int(self.state.global_step.numpy())
        controller = Controller(self.config, self.state, self.loop, self.evaluate, self.outputs,
                                self.model, self.optimizer, self.verbose, self.actions)
        previous = self.outputs.read_results() if restored else None
        if (previous and previous.get("history") == self.state.history and controller.finished()
                and previous.get("finished_with") == self._finish_settings()):
            return self._report_finished(previous)
        self.outputs.open(restored_step=position, fresh=restored is None)
        if restored and self.verbose:
            epoch, batch = divmod(position, self.steps_per_epoch)
            print(f"resumed from {restored} (epoch {epoch + 1}, step {batch} of "
                  f"{self.steps_per_epoch})", flush=True)
        try:
            stopped_early = controller.train()
        finally:
            self.outputs.flush()
        seconds_per_step = (controller.timed_seconds / controller.timed_steps
                            if controller.timed_steps else None)
        return self._finish(stopped_early, seconds_per_step)

    def _finish_settings(self):
        """The settings that decide how a trained run is finished (evaluated, exported): a run
        rerun with other ones is finished again, not only reported."""
        return {name: getattr(self.config, name) for name in FINISH_SETTINGS}

    def _report_finished(self, results):
        if self.verbose:
            print(f"already finished: {self.run_dir} (epoch {results['epoch']}/{self.config.epochs}"
                  f"{', stopped early' if results['stopped_early'] else ''}); nothing trained, "
                  "written or exported", flush=True)
            if results["test_accuracy"] is not None:
                print(f"test loss {results['test_loss']:.4f} acc {results['test_accuracy']:.4f}",
                      flush=True)
            print(f"diagnosis: {results['diagnosis']}", flush=True)
        return TrainResult(results["history"], results["test_loss"], results["test_accuracy"],
                           self.run_dir, results["export_path"], results["diagnosis"], None,
                           self.model)

    def close(self):
        """Releases the run directory's lock (which the end of the process releases too)."""
        if self._run_lock is not None:
            self._run_lock.release()

    def _finish(self, stopped_early, seconds_per_step):
        config, history = self.config, self.state.history
        last = history[-1]
        if config.early_stopping_patience:
            # The exported model is the best one: its errors are evaluated again, not looked up.
            self.state.restore_best()
            _, train_accuracy = self.evaluate("train")
            final_dev_loss, final_dev_accuracy = self.evaluate("dev")
        else:
            train_accuracy = last["train_accuracy"]
            final_dev_loss, final_dev_accuracy = last["dev_loss"], last["dev_accuracy"]
        test_loss, test_accuracy = self.evaluate("test") if config.evaluate_test else (None, None)
        verdict = diagnosis.diagnose(1 - train_accuracy, 1 - final_dev_accuracy, config.best_error)
        result = TrainResult(history, test_loss, test_accuracy, self.run_dir, None, verdict,
                             seconds_per_step, self.model)
        if not self.is_chief:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)
            return result
        if config.export:
            result.export_path = export_lib.export_model(self.model, config.export_dir,
                                                         config.model_name)
        self.outputs.write_results(dict(
            last, epochs=len(history), test_loss=test_loss, test_accuracy=test_accuracy,
            # The state's best (the weights in best/), which min_delta decides: not max(history).
            best_dev_accuracy=float(self.state.best_dev_accuracy.numpy()), diagnosis=verdict,
            export_path=result.export_path, stopped_early=stopped_early,
            exported_dev_loss=final_dev_loss, exported_dev_accuracy=final_dev_accuracy,
            jit_compile=self.jit_compile, finished_with=self._finish_settings(), history=history,
        ))
        if self.verbose:
            if config.evaluate_test:
                print(f"test loss {test_loss:.4f} acc {test_accuracy:.4f}", flush=True)
            print(f"diagnosis: {verdict}", flush=True)
        return result


def train(config, strategy=None, verbose=None, actions=()):
    """Trains, evaluates and exports one model as ``config`` says; returns a ``TrainResult``.

    ``actions`` are callables run after each evaluation as ``action(metrics)`` (the epoch's
    history record: epoch, step, train and dev loss and accuracy, learning_rate, seconds, and
    ``run_dir``), after the checkpoint due at that step, if any.

    With ``config.deterministic``, TensorFlow's op determinism (a process-wide setting) is
    enabled for the run and restored afterwards.
    """
    # No public getter or disabler exists (tf.config.experimental only enables).
    from tensorflow.python.framework import config as tf_config

    determinism_was_enabled = tf_config.is_op_determinism_enabled()
    try:
        trainer = Trainer(config, strategy=strategy, verbose=verbose, actions=actions)
        try:
            return trainer.run()
        finally:
            trainer.close()
    finally:
        if not determinism_was_enabled:
            tf_config.disable_op_determinism()
