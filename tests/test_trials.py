"""The trial runner (tfnet.trials) on this session's Ray (conftest.ray_local): each trial's outcome
with its reason, SIGINT stopping the run cleanly, and the settings it refuses.

(Restarts after a node dies, on a two-node cluster: tests/test_tune_script.py.)
"""

import json
import os
import re
import signal

import pytest

from tfnet import config as config_lib
from tfnet import trials
from tfnet.config import TrainConfig


def _trial(name, tmp_path, **fields):
    config = TrainConfig(optimizer="gd", epochs=2, export=False, evaluate_test=False,
                         model_dir=str(tmp_path / name), **fields)
    return trials.Trial(name, config)


def test_each_trial_ends_with_its_outcome_and_sigint_stops_the_rest(ray_local, tmp_path):
    runs = [_trial("ok", tmp_path, learning_rate=0.1),
            _trial("diverged", tmp_path, learning_rate=3000.0),  # NaN at step 4 (gd, moons)
            _trial("failed", tmp_path, dataset="no_such_set"),
            _trial("never", tmp_path, learning_rate=0.1)]
    said = []

    def on_outcome(outcome):
        said.append(outcome)
        if len(said) == 3:  # Ctrl-C while the fourth is about to run
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(trials.Interrupted) as interrupted:
        trials.run(runs, tmp_path / "tune", trials.ClusterConfig(max_concurrent_trials=1),
                   on_outcome=on_outcome)
    assert interrupted.value.signum == signal.SIGINT
    outcomes = {o.name: o for o in said}
    assert list(outcomes) == ["ok", "diverged", "failed"]  # one at a time, in order

    ok = outcomes["ok"]
    results = json.loads((tmp_path / "ok" / "results.json").read_text())
    assert (ok.status, ok.error) == ("ok", "")
    last = results["history"][-1]
    assert ok.last == {key: last[key] for key in ok.last}  # the last evaluated epoch, as run
    assert ok.attempts == ({"node_id": ok.node_id, "first_epoch": 1},)

    diverged = outcomes["diverged"]
    assert diverged.status == "diverged"
    assert re.match(r"NonFiniteError: non-finite cost or gradient \(cost=(nan|inf)\) at step \d+ "
                    r"\(epoch 1, mini-batch \d+\)", diverged.error), diverged.error
    assert diverged.last["epoch"] == 0  # stopped before its first evaluation

    failed = outcomes["failed"]
    assert failed.status == "failed"
    assert failed.error.startswith("DatasetNotFoundError: ") and "no_such_set" in failed.error
    assert failed.node_id == ok.node_id  # this session's one node
    # The interrupted trial has no outcome, its directory nothing a rerun would mistake for one;
    # Tune's own files are gone.
    assert not (tmp_path / "never" / "results.json").exists()
    assert not (tmp_path / "tune").exists()


def test_a_trial_too_wide_for_every_node_is_refused(ray_local):
    with pytest.raises(ValueError, match=re.escape(
            "cpus_per_trial must be at most the CPUs of the cluster's largest node (1). "
            "Received: cpus_per_trial=2.0")):
        with trials.connect(trials.ClusterConfig(cpus_per_trial=2.0)):
            pass


def test_trial_names_must_be_distinct(tmp_path):
    runs = [_trial("a", tmp_path), _trial("a", tmp_path)]
    with pytest.raises(ValueError, match=re.escape(
            "trial names must be distinct. Received: ['a', 'a']")):
        trials.run(runs, tmp_path / "tune")


@pytest.mark.parametrize("fields, message", [
    (dict(ray_address="localhost"), "ray_address must be auto or HOST:PORT of a Ray head (e.g. "
     "10.0.0.5:6379). Received: ray_address='localhost'"),
    (dict(cpus_per_trial=0.0), "cpus_per_trial must be > 0. Received: cpus_per_trial=0.0"),
    (dict(max_concurrent_trials=-1),
     "max_concurrent_trials must be a non-negative integer. Received: max_concurrent_trials=-1"),
])
def test_bad_cluster_settings_are_named(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        config_lib.check_fields(trials.ClusterConfig(**fields))


@pytest.mark.parametrize("fields, message", [
    (dict(max_epochs=3, grace_period=3), "asha_grace_period must be an integer from 1 to the "
     "epochs - 1 (2): ASHA stops trials before their last epoch. Received: asha_grace_period=3"),
    (dict(max_epochs=3, reduction_factor=1.0),
     "asha_reduction_factor must be > 1. Received: asha_reduction_factor=1.0"),
    (dict(max_epochs=3, metric="best_dev_accuracy"),
     "metric must be dev_accuracy or dev_loss for ASHA. Received: metric='best_dev_accuracy'"),
])
def test_bad_asha_settings_are_named(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        trials.Asha(**fields)
