"""Early stopping (``tfnet.training.actions.EarlyStopping``): its bookkeeping alone, and whole
runs that stop, export their best weights and train no further when run again."""

import json

import numpy as np
import pytest
import tensorflow as tf

from helpers import train_config
from tfnet import data as data_lib
from tfnet import diagnosis, training
from tfnet.training import actions

STEPS_PER_EPOCH = 13


SMALL = dict(hidden_units=(8,), seed=1, jit_compile="off")


def test_epochs_without_improvement_count_epochs_not_evaluations(tmp_path):
    model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
    early = actions.EarlyStopping(model, str(tmp_path), patience=5, min_delta=0.0)
    waited = []
    for epoch, since, accuracy in ((3, 3, 0.6), (6, 3, 0.7), (9, 3, 0.7), (10, 1, 0.65)):
        early(dict(dev_accuracy=accuracy, step=epoch * STEPS_PER_EPOCH), epochs_since=since)
        waited.append(int(early.epochs_without_improvement.numpy()))
    assert waited == [0, 0, 3, 4]  # epochs 7-9 and then 10 brought nothing
    state = tf.train.get_checkpoint_state(str(tmp_path / "best"))
    assert state.model_checkpoint_path.endswith("ckpt-78")  # the best kept: epoch 6's, one kept
    assert not early.exhausted()
    early.epochs_without_improvement.assign(5)
    assert early.exhausted()
    assert not actions.EarlyStopping(model, str(tmp_path / "x"), 0, 0.0).exhausted()


def test_min_delta_decides_what_counts_as_an_improvement(tmp_path):
    model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
    early = actions.EarlyStopping(model, str(tmp_path), patience=2, min_delta=0.05)
    for epoch, accuracy in ((1, 0.5), (2, 0.54), (3, 0.55)):
        early(dict(dev_accuracy=accuracy, step=epoch), epochs_since=1)
    # 0.54 and 0.55 are not more than 0.05 above 0.5: two epochs without improvement, the best still 0.5.
    assert float(early.best_dev_accuracy.numpy()) == 0.5 and early.exhausted()


# -- Whole runs

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
    config = train_config(tmp_path / "run", SMALL, **_EARLY, epochs=10, early_stopping_patience=3,
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
    assert results["diagnosis"] == diagnosis.diagnose(1 - results["train_accuracy"], 1 - best)

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
    training.train(train_config(tmp_path / "run", SMALL, **early, epochs=7), verbose=0)
    # best/ is kept without early stopping too, because patience may be set on resume.
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "best"))
    history = json.loads((tmp_path / "run" / "results.json").read_text())["history"]
    best, best_epoch, waited = _best_by_the_rule(history, 0.0)
    assert best_epoch < len(history) and history[-1]["dev_accuracy"] < best  # restoring matters

    training.train(train_config(tmp_path / "run", SMALL, **early, epochs=7, early_stopping_patience=waited,
                           export=True, export_dir=str(export_dir)), verbose=0)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["stopped_early"] and results["epochs"] == 7
    assert results["best_dev_accuracy"] == best
    assert results["exported_dev_accuracy"] == pytest.approx(best, abs=1e-7)
    assert _served_dev_accuracy(export_dir / "moons" / "1") == pytest.approx(best, abs=1e-7)
