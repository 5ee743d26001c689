"""End to end: scripts/tune.py runs real scripts/train.py trials on the embedded moons set.

Tiny trials (1 epoch, one small hidden layer) keep this file near a minute on two shared cores.
Expected values are read back from what the trials themselves wrote (results.json, their
TensorBoard events), so the checks are that the search's records agree with them.
"""

import csv
import glob
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import metadata

from tfnet import search_space, tuning

SPACE = {
    "learning_rate": {"scale": "log", "low": 1e-3, "high": 0.3},
    "beta1": {"scale": "one_minus_log", "low": 0.8, "high": 0.99},
    "hidden_units": {"scale": "choice", "values": ["4", "8"]},
}


def _run(repo_root, script, *args):
    env = dict(os.environ, PYTHONPATH=repo_root, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, os.path.join(repo_root, "scripts", script), *args],
                          env=env, capture_output=True, text=True, timeout=300)


def _tune(repo_root, tmp_path, name, *args):
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    search_dir = tmp_path / name
    result = _run(repo_root, "tune.py", f"--search_space={space}", f"--search_dir={search_dir}",
                  "--optimizer=keras_adam", "--epochs=1", "--deterministic", "--batch_size=64",
                  *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return search_dir, result.stdout


def _summaries(directory):
    """(tag, value proto) of every summary in the events files directly inside ``directory``."""
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                yield value.tag, value


def _check_search(search_dir, expected_trials):
    records = json.loads((search_dir / "results.json").read_text())
    assert sorted(r["trial"] for r in records) == sorted(expected_trials)
    assert all(r["status"] == "ok" for r in records)
    accuracies = [r["dev_accuracy"] for r in records]
    assert accuracies == sorted(accuracies, reverse=True)
    with open(search_dir / "results.csv") as f:
        assert [row["trial"] for row in csv.DictReader(f)] == [r["trial"] for r in records]

    # The HParams dashboard's experiment: the searched parameters and the dev/train metrics.
    [experiment] = [metadata.parse_experiment_plugin_data(v.metadata.plugin_data.content)
                    for tag, v in _summaries(search_dir) if tag == "_hparams_/experiment"]
    assert [h.name for h in experiment.hparam_infos] == list(SPACE)
    assert {(m.name.group, m.name.tag) for m in experiment.metric_infos} >= {
        ("dev", "epoch_accuracy"), ("dev", "epoch_loss")}
    for record in records:
        trial_dir = search_dir / record["trial"]
        # Each trial is a session of that experiment, logged with its sampled values ...
        [session] = [metadata.parse_session_start_info_plugin_data(v.metadata.plugin_data.content)
                     for tag, v in _summaries(trial_dir) if tag == "_hparams_/session_start_info"]
        assert session.hparams["learning_rate"].number_value == pytest.approx(
            record["values"]["learning_rate"], rel=1e-12)
        assert session.hparams["hidden_units"].string_value == record["values"]["hidden_units"]
        # ... and the dashboard's dev metric is the one the table ranks by (TF2 logs tensors).
        dev_accuracy = [float(tf.make_ndarray(v.tensor)) for tag, v in _summaries(trial_dir / "dev")
                        if tag == "epoch_accuracy"]
        assert dev_accuracy[-1] == pytest.approx(record["dev_accuracy"], abs=1e-6)
    return records


def test_parallel_search_and_its_best_flagfile_reproduce(repo_root, tmp_path):
    search_dir, output = _tune(repo_root, tmp_path, "parallel", "--rounds=1",
                               "--trials_per_round=2", "--parallel=2", "--search_seed=3")
    assert "[2/2]" in output and "best so far" in output
    records = _check_search(search_dir, ["round0-trial000", "round0-trial001"])

    # The best flagfile retrains the best trial to the same dev accuracy (deterministic ops).
    rerun_dir = tmp_path / "rerun"
    result = _run(repo_root, "train.py", f"--flagfile={search_dir / 'best_flags.txt'}",
                  f"--model_dir={rerun_dir}", "--noexport")
    assert result.returncode == 0, result.stdout + result.stderr
    rerun = json.loads((rerun_dir / "results.json").read_text())
    assert rerun["dev_accuracy"] == records[0]["dev_accuracy"]
    assert rerun["dev_loss"] == pytest.approx(records[0]["dev_loss"], rel=1e-6)


def test_sequential_coarse_to_fine_search(repo_root, tmp_path):
    # Through the library (the script is covered above), which saves a process start-up.
    config = tuning.SearchConfig(
        search_dir=str(tmp_path / "sequential"),
        train_script=os.path.join(repo_root, "scripts", "train.py"),
        base_flags={"optimizer": "keras_adam", "epochs": 1, "deterministic": True},
        rounds=2, trials_per_round=1, parallel=1,
        env=dict(os.environ, PYTHONPATH=repo_root, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    tuning.run_search(search_space.SearchSpace.from_dict(SPACE), config)
    search_dir = tmp_path / "sequential"
    _check_search(search_dir, ["round0-trial000", "round1-trial000"])
    state = json.loads((search_dir / "search.json").read_text())
    # With one trial per round, round 1 zooms to ±padding × width around round 0's trial.
    alpha0 = state["rounds"][0]["trials"][0]["values"]["learning_rate"]
    round1 = state["rounds"][1]["space"]["learning_rate"]
    assert round1["low"] <= alpha0 <= round1["high"]
    assert round1["high"] / round1["low"] < 0.3 / 1e-3


DEPTH_YAML = ("learning_rate: {scale: log, low: 1.0e-3, high: 0.3}\n"
              "units: {scale: choice, values: [4, 8]}\n"
              "layers: {scale: int, low: 1, high: 2}\n")


@pytest.mark.parametrize("name, text, args, message", [
    # The file parses (its own errors are tested in test_search_space.py) but names a flag the
    # search sets itself.
    ("space.json", json.dumps({"model_dir": {"scale": "choice", "values": ["a"]}}), [],
     "--search_space={space}: parameters must be training flags other than model_dir, "
     "export_dir, export_name, export, or units and layers. Received: model_dir"),
    ("space.yaml", "learning_rate: {scale: log, low: 1.0e-4\nbeta: [", [],
     "--search_space={space}: search space file must be a readable YAML file (while parsing a "
     "flow mapping"),
    # A fixed --hidden_units would be silently replaced by the sampled units and layers.
    ("space.yaml", DEPTH_YAML, ["--hidden_units=16,8"],
     "--hidden_units must not be given when --search_space={space} has units and layers, which "
     "compose each trial's hidden units. Received: --hidden_units=16,8"),
], ids=["reserved_flag", "invalid_yaml", "hidden_units_with_depth"])
def test_bad_search_space_flag_is_named(repo_root, tmp_path, name, text, args, message):
    space = tmp_path / name
    space.write_text(text)
    result = _run(repo_root, "tune.py", f"--search_space={space}", "--optimizer=keras_adam",
                  f"--search_dir={tmp_path / 'search'}", *args)
    assert result.returncode != 0
    assert message.format(space=space) in result.stderr
