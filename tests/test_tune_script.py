"""End to end: scripts/tune.py runs real scripts/train.py trials on the embedded moons set.

Tiny trials (1 epoch, one or two small hidden layers) keep this file near two minutes on two
shared cores: three searches of two trials (parallel, sequential, interrupted by SIGTERM and
resumed), two retrainings from the best flagfile and three refused command lines.
Expected values are read back from what the trials themselves wrote (results.json, their
TensorBoard events), so the checks are that the search's records agree with them.
"""

import csv
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import metadata

from helpers import runs_trial

SPACE = {
    "learning_rate": {"scale": "log", "low": 1e-3, "high": 0.3},
    "beta1": {"scale": "one_minus_log", "low": 0.8, "high": 0.99},
    "hidden_units": {"scale": "choice", "values": ["4", "8"]},
}

# Width and depth searched: each trial gets --hidden_units=units,...,units (layers times). YAML.
DEPTH_YAML = ("learning_rate: {scale: log, low: 1.0e-3, high: 0.3}\n"
              "units: {scale: choice, values: [4, 8]}\n"
              "layers: {scale: int, low: 1, high: 2}\n")

TINY_TRIALS = ("--optimizer=keras_adam", "--epochs=1", "--deterministic", "--batch_size=64")


def _env(repo_root):
    return dict(os.environ, PYTHONPATH=repo_root, TF_CPP_MIN_LOG_LEVEL="2")


def _command(repo_root, script, *args):
    return [sys.executable, os.path.join(repo_root, "scripts", script), *args]


def _run(repo_root, script, *args):
    return subprocess.run(_command(repo_root, script, *args), env=_env(repo_root),
                          capture_output=True, text=True, timeout=300)


def _tune_args(tmp_path, name, *args, space_text=None):
    space = tmp_path / ("space.yaml" if space_text else "space.json")
    space.write_text(space_text or json.dumps(SPACE))
    return [f"--search_space={space}", f"--search_dir={tmp_path / name}", *TINY_TRIALS, *args]


def _tune(repo_root, tmp_path, name, *args, space_text=None):
    result = _run(repo_root, "tune.py", *_tune_args(tmp_path, name, *args, space_text=space_text))
    assert result.returncode == 0, result.stdout + result.stderr
    return tmp_path / name, result.stdout


def _summaries(directory):
    """(tag, value proto) of every summary in the events files directly inside ``directory``."""
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                yield value.tag, value


def _logged_hidden_units(values):
    """The hidden_units string train.py logs for a trial's sampled values."""
    if "layers" in values:
        return ",".join([str(values["units"])] * values["layers"])
    return values["hidden_units"]


def _check_search(search_dir, expected_trials, hparam_names=tuple(SPACE)):
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
    assert [h.name for h in experiment.hparam_infos] == list(hparam_names)
    assert {(m.name.group, m.name.tag) for m in experiment.metric_infos} >= {
        ("dev", "epoch_accuracy"), ("dev", "epoch_loss")}
    for record in records:
        trial_dir = search_dir / record["trial"]
        # Each trial is a session of that experiment, logged with its sampled values ...
        [session] = [metadata.parse_session_start_info_plugin_data(v.metadata.plugin_data.content)
                     for tag, v in _summaries(trial_dir) if tag == "_hparams_/session_start_info"]
        assert session.hparams["learning_rate"].number_value == pytest.approx(
            record["values"]["learning_rate"], rel=1e-12)
        assert session.hparams["hidden_units"].string_value == _logged_hidden_units(
            record["values"])
        # ... whose values lie in the declared domains, or the dashboard would hide the trial ...
        for info in experiment.hparam_infos:
            if info.WhichOneof("domain") == "domain_discrete":
                assert session.hparams[info.name] in list(info.domain_discrete.values)
        # ... and the dashboard's dev metric is the one the table ranks by (TF2 logs tensors).
        dev_accuracy = [float(tf.make_ndarray(v.tensor)) for tag, v in _summaries(trial_dir / "dev")
                        if tag == "epoch_accuracy"]
        assert dev_accuracy[-1] == pytest.approx(record["dev_accuracy"], abs=1e-6)
    return records


def _check_best_flagfile_reproduces(repo_root, tmp_path, search_dir, best):
    """train.py --flagfile=best_flags.txt --deterministic retrains ``best`` to its dev metric."""
    rerun_dir = tmp_path / f"rerun-{search_dir.name}"
    result = _run(repo_root, "train.py", f"--flagfile={search_dir / 'best_flags.txt'}",
                  "--deterministic", f"--model_dir={rerun_dir}", "--noexport")
    assert result.returncode == 0, result.stdout + result.stderr
    rerun = json.loads((rerun_dir / "results.json").read_text())
    assert rerun["dev_accuracy"] == best["dev_accuracy"]
    assert rerun["dev_loss"] == pytest.approx(best["dev_loss"], rel=1e-6)


def test_parallel_search_and_its_best_flagfile_reproduce(repo_root, tmp_path):
    search_dir, output = _tune(repo_root, tmp_path, "parallel", "--rounds=1",
                               "--trials_per_round=2", "--parallel=2", "--search_seed=3")
    assert "[2/2]" in output and "best so far" in output
    records = _check_search(search_dir, ["round0-trial000", "round0-trial001"])
    _check_best_flagfile_reproduces(repo_root, tmp_path, search_dir, records[0])


def test_sequential_coarse_to_fine_search_of_width_and_depth(repo_root, tmp_path):
    # One trial per round: round 1 zooms to ±padding × width around round 0's trial.
    search_dir, output = _tune(repo_root, tmp_path, "sequential", "--rounds=2",
                               "--trials_per_round=1", "--parallel=1", space_text=DEPTH_YAML)
    assert "[1/2] round0-trial000" in output and "[2/2] round1-trial000" in output
    records = _check_search(search_dir, ["round0-trial000", "round1-trial000"],
                            hparam_names=["learning_rate", "hidden_units"])
    state = json.loads((search_dir / "search.json").read_text())
    alpha0 = state["rounds"][0]["trials"][0]["values"]["learning_rate"]
    round1 = state["rounds"][1]["space"]["learning_rate"]
    np.testing.assert_allclose(np.log10([round1["low"], round1["high"]]),
                               [max(-3, np.log10(alpha0) - 0.1 * np.log10(300)),
                                min(np.log10(0.3), np.log10(alpha0) + 0.1 * np.log10(300))],
                               atol=1e-12)
    # The trials received the composed flag; the best flagfile keeps it, and reproduces.
    best_flags = (search_dir / "best_flags.txt").read_text().splitlines()
    assert f"--hidden_units={_logged_hidden_units(records[0]['values'])}" in best_flags
    _check_best_flagfile_reproduces(repo_root, tmp_path, search_dir, records[0])


def _wait_for(condition, process, timeout=240):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"tune.py exited early: {process.communicate()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_sigterm_stops_the_search_and_a_rerun_finishes_it(repo_root, tmp_path):
    args = _tune_args(tmp_path, "interrupted", "--rounds=1", "--trials_per_round=2",
                      "--parallel=1")
    search_dir = tmp_path / "interrupted"
    state_path = search_dir / "search.json"

    def state():
        return json.loads(state_path.read_text()) if state_path.exists() else {}

    process = subprocess.Popen(_command(repo_root, "tune.py", *args), env=_env(repo_root),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # SIGTERM once the first trial is recorded and the second runs.
        _wait_for(lambda: state().get("records") and state().get("running"), process)
        [(running_trial, running)] = state()["running"].items()
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, stdout + stderr
    assert (f"Search interrupted by SIGTERM: finished trials are recorded in {search_dir}/"
            "search.json and are not re-run; run the same command again to resume.") in stderr
    assert "[1/2] round0-trial000" in stdout and "[2/2]" not in stdout
    # The trial it was running was killed with it and is not recorded.
    assert running_trial == "round0-trial001"
    assert not runs_trial(running["pid"], running["model_dir"])
    assert set(state()["records"]) == {"round0-trial000"} and state()["running"] == {}
    finished = search_dir / "round0-trial000"
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in finished.iterdir()
              if p.is_file()}

    result = _run(repo_root, "tune.py", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    # Only the unfinished trial ran; the finished one's files are untouched.
    assert "[2/2] round0-trial001" in result.stdout and "] round0-trial000" not in result.stdout
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in finished.iterdir()
            if p.is_file()} == before
    _check_search(search_dir, ["round0-trial000", "round0-trial001"])


@pytest.mark.parametrize("name, text, args, message", [
    # The file parses (its own errors are tested in test_search_space.py) but names a flag the
    # search sets itself.
    ("space.json", json.dumps({"model_dir": {"scale": "choice", "values": ["a"]}}), [],
     "--search_space={space}: parameters must be training flags other than model_dir, "
     "export_dir, export_name, export, evaluate_test, or units and layers. Received: model_dir"),
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
