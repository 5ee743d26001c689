"""Between loop calls: what is evaluated, checkpointed and stopped when, and how K is chosen."""

import json
import types

import numpy as np
import pytest
import tensorflow as tf

from tfnet import config as config_lib
from tfnet import data as data_lib
from tfnet import diagnosis, training
from tfnet.training import controller as controller_lib

STEPS_PER_EPOCH = 13  # moons: 800 training examples, batch 64


def _config(tmp_path, name="run", **overrides):
    values = dict(model_dir=str(tmp_path / name), export=False, hidden_units=(8,), seed=1,
                  checkpoint_every_seconds=0.0, jit_compile="off")
    values.update(overrides)
    return config_lib.TrainConfig(**values)


def _checkpoint_steps(directory):
    state = tf.train.get_checkpoint_state(str(directory))
    return [int(path.rsplit("-", 1)[1]) for path in state.all_model_checkpoint_paths]


def test_evaluations_every_few_epochs_and_the_last_checkpoints_by_steps(tmp_path):
    config = _config(tmp_path, epochs=7, eval_every_epochs=3, checkpoint_every_steps=20,
                     keep_checkpoints=100)
    result = training.train(config, verbose=0)
    assert [r["epoch"] for r in result.history] == [3, 6, 7]
    assert [r["step"] for r in result.history] == [39, 78, 91]
    # Every multiple of 20 is a loop boundary, and the end is checkpointed too.
    assert _checkpoint_steps(tmp_path / "run" / "checkpoints") == [20, 40, 60, 80, 91]


def _controller(steps_per_loop=0, epochs=10, eval_every_epochs=1, checkpoint_every_steps=0):
    config = types.SimpleNamespace(epochs=epochs, eval_every_epochs=eval_every_epochs,
                                   checkpoint_every_steps=checkpoint_every_steps,
                                   steps_per_loop=steps_per_loop)
    loop = types.SimpleNamespace(steps_per_epoch=STEPS_PER_EPOCH, max_steps_per_call=10_000)
    return controller_lib.Controller(config, None, loop, None, None, None, None, verbose=0)


def test_a_call_runs_to_the_next_event_and_lasts_about_a_second_at_most():
    controller = _controller(eval_every_epochs=4, checkpoint_every_steps=30)
    # First call: its time includes compiling, so it is kept short.
    assert controller._steps_for_next_call(0) == controller_lib.FIRST_CALL_STEPS
    controller._seconds_per_step, controller._last_steps = 1e-5, 10_000
    assert controller._steps_for_next_call(0) == 30  # the checkpoint at step 30
    assert controller._steps_for_next_call(30) == 52 - 30  # the evaluation after epoch 4
    assert controller._steps_for_next_call(120) == 130 - 120  # the end (epoch 10 evaluated)
    controller._seconds_per_step = 2e-3  # slow steps: about a second's worth, 500
    controller.config.checkpoint_every_steps = 0
    controller.config.eval_every_epochs = 10
    assert controller._steps_for_next_call(0) == 130
    controller.total_steps = 10**6
    controller.config.epochs = controller.config.eval_every_epochs = 10**6 // STEPS_PER_EPOCH
    assert controller._steps_for_next_call(0) == int(controller_lib.SECONDS_PER_CALL / 2e-3)
    controller._last_steps = 20  # and at most 8 times the last call
    assert controller._steps_for_next_call(0) == 160
    assert _controller(steps_per_loop=1)._steps_for_next_call(5) == 1


class _FakeState:
    """The parts of ``RunState`` an evaluation touches."""

    def __init__(self):
        self.global_step = tf.Variable(0, dtype=tf.int64)
        self.best_dev_accuracy = tf.Variable(-1.0, dtype=tf.float64)
        self.epochs_without_improvement = tf.Variable(0, dtype=tf.int64)
        self.history, self.best_saves = [], []
        self.best = types.SimpleNamespace(save=lambda checkpoint_number: self.best_saves.append(checkpoint_number))

    def append_history(self, record):
        self.history.append(record)


def test_epochs_without_improvement_count_epochs_not_evaluations():
    dev_accuracies = iter([0.6, 0.7, 0.7, 0.65])
    controller = _controller(eval_every_epochs=3)
    controller.config.early_stopping_patience = 5
    controller.config.early_stopping_min_delta = 0.0
    controller.state = _FakeState()
    controller.evaluate = lambda split: (0.1, 0.5) if split == "train" else (0.2, next(dev_accuracies))
    controller.outputs = types.SimpleNamespace(log_epoch=lambda record, model: None)
    controller.optimizer = types.SimpleNamespace(learning_rate=0.01)
    waited = []
    for epoch in (3, 6, 9, 10):
        controller.state.global_step.assign(epoch * STEPS_PER_EPOCH)
        controller._evaluate_epoch(epoch)
        waited.append(int(controller.state.epochs_without_improvement.numpy()))
    assert waited == [0, 0, 3, 4]  # epochs 7-9 and then 10 brought nothing
    assert controller.state.best_saves == [39, 78]
    assert not controller._patience_exhausted()
    controller.state.epochs_without_improvement.assign(5)
    assert controller._patience_exhausted()


def test_a_run_resumed_where_evaluation_became_due_evaluates_that_epoch_first(tmp_path):
    # A run evaluated every 2 epochs, checkpointed every epoch; it is made to look killed after
    # its checkpoint at the end of epoch 1, which was not evaluated then.
    training.train(_config(tmp_path, epochs=2, eval_every_epochs=2, checkpoint_every_steps=13),
                   verbose=0)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert _checkpoint_steps(checkpoints) == [13, 26]
    first = str(checkpoints / "ckpt-13")
    tf.compat.v1.train.update_checkpoint_state(str(checkpoints), first, all_model_checkpoint_paths=[first])
    resumed = training.train(_config(tmp_path, epochs=2, eval_every_epochs=1), verbose=0)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    assert [r["step"] for r in resumed.history] == [13, 26]


def test_a_diverging_run_stops_at_the_first_non_finite_step_and_keeps_the_last_checkpoint(tmp_path):
    config = _config(tmp_path, optimizer="keras_sgd", learning_rate=1e12, checkpoint_every_steps=2,
                     steps_per_loop=0, log_every_steps=1)
    with pytest.raises(training.NonFiniteError) as raised:
        training.train(config, verbose=0)
    message = str(raised.value)
    assert "non-finite cost or gradient" in message and "at step 3 (epoch 1, mini-batch 3)" in message
    good = tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
    assert good.endswith("ckpt-2") and f"Last good checkpoint, left intact: {good}" in message
    reader = tf.train.load_checkpoint(good)
    assert all(np.isfinite(reader.get_tensor(k)).all() for k in reader.get_variable_to_shape_map()
               if reader.get_variable_to_dtype_map()[k].is_floating)


def test_skip_step_drops_the_non_finite_updates_and_says_so(tmp_path, capsys):
    config = _config(tmp_path, optimizer="keras_sgd", learning_rate=1e12, epochs=1,
                     on_nonfinite="skip_step")
    training.train(config, verbose=2)
    assert "update skipped" in capsys.readouterr().out


# -- Early stopping ---------------------------------------------------------------------------

def _served_dev_accuracy(version_dir):
    """Dev accuracy of the SavedModel in ``version_dir``, reloaded and served as a client would."""
    dev = data_lib.in_memory(data_lib.load("moons").dev)
    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    probabilities = next(iter(serve(features=dev.features).values())).numpy()
    return np.mean(probabilities.argmax(axis=1) == dev.labels.numpy())


def _best_by_the_rule(history, min_delta):
    """(best dev accuracy, its epoch, epochs since) by early stopping's rule: an epoch counts as
    an improvement when it beats the best so far by more than min_delta."""
    best, best_epoch, waited = -1.0, None, 0
    for record in history:
        if record["dev_accuracy"] > best + min_delta:
            best, best_epoch, waited = record["dev_accuracy"], record["epoch"], 0
        else:
            waited += 1
    return best, best_epoch, waited


# keras_adam at 0.01, no XLA. Dev accuracies with seed 1: 0.93 0.925 0.935 0.955 0.98 0.98 0.99
# 0.99 ...; with seed 0: 0.925 0.925 0.935 0.965 0.98 0.995 0.985 ...
_EARLY = dict(optimizer="keras_adam", learning_rate=0.01, seed=1, deterministic=True,
              hidden_units=(64, 32))


def test_early_stopping_exports_the_best_weights_and_a_rerun_trains_no_further(tmp_path, capsys):
    export_dir = tmp_path / "saved_models"
    config = _config(tmp_path, **_EARLY, epochs=10, early_stopping_patience=3,
                     early_stopping_min_delta=0.02, export=True, export_dir=str(export_dir))
    training.train(config, verbose=0)
    model_dir = tmp_path / "run"
    results = json.loads((model_dir / "results.json").read_text())
    history = results["history"]
    best, best_epoch, waited = _best_by_the_rule(history, 0.02)
    assert results["stopped_early"] and waited == 3 and len(history) < 10
    # What makes this run a test: the best epoch is not the last, a later epoch beat it by less
    # than min_delta (so the highest logged accuracy is not the best), and the last epoch's
    # training accuracy differs from the best epoch's.
    assert best_epoch < len(history) and max(r["dev_accuracy"] for r in history) > best
    best_record = history[best_epoch - 1]
    assert best_record["train_accuracy"] != history[-1]["train_accuracy"]
    assert results["best_dev_accuracy"] == best
    assert results["exported_dev_accuracy"] == pytest.approx(best, abs=1e-7)
    assert results["exported_dev_loss"] == pytest.approx(best_record["dev_loss"], rel=1e-6)
    assert _served_dev_accuracy(export_dir / "moons" / "1") == pytest.approx(best, abs=1e-7)
    # The diagnosis is the exported (best) model's, not the last epoch's.
    assert results["diagnosis"] == diagnosis.diagnose(1 - best_record["train_accuracy"], 1 - best)

    # The same run again after a kill during its final export (no results yet): no further
    # epoch, and the same best weights exported again.
    before = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    (model_dir / "results.json").unlink()
    capsys.readouterr()
    training.train(config, verbose=2)
    out = capsys.readouterr().out
    assert "early stopping: no dev improvement for 3 epochs" in out
    assert not any(line.startswith("epoch ") for line in out.splitlines())
    again = json.loads((model_dir / "results.json").read_text())
    assert again["history"] == history and again["stopped_early"]
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")) == before
    assert _served_dev_accuracy(export_dir / "moons" / "2") == pytest.approx(best, abs=1e-7)


def test_a_run_resumed_with_early_stopping_switched_on_exports_its_best_weights(tmp_path):
    export_dir = tmp_path / "saved_models"
    early = dict(_EARLY, seed=0)  # its best epoch, the 6th of 7, is not its last
    training.train(_config(tmp_path, **early, epochs=7), verbose=0)
    # best/ is kept without early stopping too, because patience may be set on resume.
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "best"))
    history = json.loads((tmp_path / "run" / "results.json").read_text())["history"]
    best, best_epoch, waited = _best_by_the_rule(history, 0.0)
    assert best_epoch < len(history) and history[-1]["dev_accuracy"] < best  # restoring matters

    training.train(_config(tmp_path, **early, epochs=7, early_stopping_patience=waited,
                           export=True, export_dir=str(export_dir)), verbose=0)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["stopped_early"] and results["epochs"] == 7
    assert results["best_dev_accuracy"] == best
    assert results["exported_dev_accuracy"] == pytest.approx(best, abs=1e-7)
    assert _served_dev_accuracy(export_dir / "moons" / "1") == pytest.approx(best, abs=1e-7)
