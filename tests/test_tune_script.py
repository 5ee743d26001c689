"""End to end: scripts/tune.py on a two-node Ray cluster on localhost (tests/ray_cluster.py),
with a node and then a driver killed mid-search, and the bad input it refuses in one line.

Trials are tiny (moons, 10 epochs, a checkpoint at every epoch: 13 steps). What a resumed trial
must end as is computed here independently: the same trial trained uninterrupted in this
process, compared bit for bit (every checkpointed tensor, every evaluated figure).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from absl import flags as absl_flags

from helpers import REPO_ROOT, assert_same_final_state, run_forked, script_env
from tfnet import flags as tfnet_flags
from tfnet import search_space as search_space_lib
from tfnet import training, tuning
from tfnet.config import TrainConfig

SPACE = {
    "learning_rate": {"scale": "log", "low": 1e-3, "high": 0.3},
    "beta1": {"scale": "one_minus_log", "low": 0.8, "high": 0.99},
    "hidden_units": {"scale": "choice", "values": ["4", "8"]},
}
STEPS_PER_EPOCH = 13  # moons: 800 training examples, b = 64
TRIALS = ("--optimizer=keras_adam", "--epochs=10", "--deterministic",
          f"--checkpoint_every_steps={STEPS_PER_EPOCH}", "--checkpoint_every_seconds=0")
# The fixed settings tune.py builds from TRIALS (every other flag at its default).
BASE = TrainConfig(optimizer="keras_adam", epochs=10, deterministic=True,
                   checkpoint_every_steps=STEPS_PER_EPOCH, checkpoint_every_seconds=0.0)
SEARCH = ("--rounds=1", "--trials_per_round=4")


def _tune_command(space_path, search_dir, *args):
    return [sys.executable, os.path.join(REPO_ROOT, "scripts", "tune.py"),
            f"--search_space={space_path}", f"--search_dir={search_dir}", *TRIALS, *SEARCH, *args]


def _start_search(cluster, tmp_path, search_dir):
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    command = _tune_command(space, search_dir, f"--ray_address={cluster.address}")
    env = dict(script_env(), **cluster.auth_env)
    return command, env, subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True)


def _wait_for(condition, process, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"tune.py exited early: {process.communicate()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _checkpointed_step(run_dir):
    """The global step of the run's latest checkpoint (its state file names it); 0 if none."""
    try:
        with open(os.path.join(run_dir, "checkpoints", "checkpoint")) as f:
            return int(re.search(r'^model_checkpoint_path: ".*-(\d+)"', f.read(), re.M).group(1))
    except (OSError, AttributeError):
        return 0


def _running_with_checkpoints(search_dir, epochs):
    """{trial: the process training it} of the trials running (no results.json yet) that have
    checkpointed ``epochs`` epochs or more. A trial reports each checkpoint to Tune before it
    trains on, so by its second checkpoint its first one is Tune's."""
    running = {}
    for run_dir in search_dir.glob("round*"):
        if (run_dir / "results.json").exists():
            continue
        if _checkpointed_step(run_dir) >= epochs * STEPS_PER_EPOCH:
            holder = re.match(r"process (\d+) on ", (run_dir / "run.lock").read_text())
            if holder:  # the run's lock names the process training it
                running[run_dir.name] = int(holder.group(1))
    return running


def _records(search_dir):
    with open(os.path.join(search_dir, "results.json")) as f:
        return json.load(f)


def _assert_ends_as_if_uninterrupted(record, tmp_path):
    """``record``'s run ends bit-identical to the same trial trained here without a stop."""
    reference = tmp_path / "reference" / record["trial"]
    training.train(tuning.trial_config(record["values"], BASE, str(reference)), verbose=0)
    expected, actual = (json.loads((path / "results.json").read_text())
                        for path in (reference, tmp_path / "search" / record["trial"]))
    for history in (expected["history"], actual["history"]):
        for epoch in history:
            epoch.pop("seconds")  # wall-clock time
    assert actual["history"] == expected["history"]
    assert_same_final_state(str(reference), record["model_dir"])


def test_a_search_on_two_nodes_loses_one_and_ends_as_if_it_had_not(ray_cluster, tmp_path):
    ray_cluster.ensure_second()
    search_dir = tmp_path / "search"
    command, env, process = _start_search(ray_cluster, tmp_path, search_dir)
    try:
        # The second node dies once the trial it runs has reported a checkpoint to Tune.
        _wait_for(lambda: any(ray_cluster.runs("second", pid) for pid in
                              _running_with_checkpoints(search_dir, 2).values()), process)
        ray_cluster.kill("second")
        stdout, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 0, stdout + stderr
    records = _records(search_dir)
    assert len(records) == 4 and all(r["status"] == "ok" for r in records), records
    # Trials ran on both nodes ...
    assert len({attempt["node_id"] for r in records for attempt in r["attempts"]}) == 2
    # ... and the one on the node that died went on on the other, from its last checkpoint
    # (Tune's), not from its first epoch ...
    [resumed] = [r for r in records if len(r["attempts"]) > 1]
    first, second = resumed["attempts"]
    assert first["node_id"] != second["node_id"] and second["first_epoch"] >= 2
    assert "[4/4]" in stdout and "FAILED" not in stdout
    # ... to end as it would have without the interruption.
    _assert_ends_as_if_uninterrupted(resumed, tmp_path)

    # The best trial's flags reproduce it, bit for bit, parsed as scripts/train.py parses them.
    best = records[0]
    flag_values = absl_flags.FlagValues()
    tfnet_flags.define_train_flags(flag_values)
    flag_values(["train.py", f"--flagfile={search_dir / 'best_flags.txt'}",
                 f"--model_dir={tmp_path / 'best'}", "--noexport", "--noevaluate_test"])
    training.train(tfnet_flags.train_config_from_flags(flag_values), verbose=0)
    rerun = json.loads((tmp_path / "best" / "results.json").read_text())
    assert (rerun["dev_accuracy"], rerun["dev_loss"]) == (best["dev_accuracy"], best["dev_loss"])
    assert_same_final_state(str(tmp_path / "best"), best["model_dir"])


def test_a_killed_driver_resumes_its_search_without_rerunning_finished_trials(ray_cluster,
                                                                              tmp_path):
    ray_cluster.ensure_second()
    search_dir = tmp_path / "search"
    state_path = search_dir / "search.json"
    command, env, process = _start_search(ray_cluster, tmp_path, search_dir)

    def state():
        return json.loads(state_path.read_text()) if state_path.exists() else {}

    try:
        # SIGKILL once a trial is recorded and another has reported a checkpoint.
        _wait_for(lambda: state().get("records") and _running_with_checkpoints(search_dir, 2),
                  process)
        # While it runs, a second search of the same directory is refused.
        config = tuning.SearchConfig(str(search_dir), base_config=BASE, rounds=1,
                                     trials_per_round=4)
        with pytest.raises(ValueError, match=re.escape(
                f"search_dir must be free of another running search (process {process.pid} on ")):
            tuning.run_search(search_space_lib.SearchSpace.from_dict(SPACE), config)
        process.send_signal(signal.SIGSTOP)  # a still picture: what ran, what was recorded
        running = list(_running_with_checkpoints(search_dir, 2))
        finished = set(state()["records"])
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
    snapshot = {name: {p.name: (p.stat().st_mtime_ns, p.read_bytes())
                       for p in (search_dir / name).rglob("*") if p.is_file()}
                for name in finished}

    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    records = {r["trial"]: r for r in _records(search_dir)}
    assert len(records) == 4 and all(r["status"] == "ok" for r in records.values())
    # Only the unfinished trials ran; the finished ones' files are untouched.
    ran = re.findall(r"^\[\d/4\] (\S+) ", completed.stdout, re.MULTILINE)
    assert sorted(ran) == sorted(set(records) - finished)
    assert {name: {p.name: (p.stat().st_mtime_ns, p.read_bytes())
                   for p in (search_dir / name).rglob("*") if p.is_file()}
            for name in finished} == snapshot
    # The trials running at the kill resumed from their checkpoints, and end as if never stopped.
    assert running
    for name in running:
        assert records[name]["attempts"][0]["first_epoch"] >= 2
        _assert_ends_as_if_uninterrupted(records[name], tmp_path)


def test_bad_input_stops_the_search_with_one_line_before_any_trial(ray_cluster, tmp_path):
    spaces = {"unknown_flag": {"learning_rate": SPACE["learning_rate"],
                               "no_such_flag": {"scale": "choice", "values": [1]}},
              "reserved_flag": {"model_dir": {"scale": "choice", "values": ["a"]}}}
    paths = {}
    for name, space in spaces.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(space))
    paths["invalid_yaml"] = tmp_path / "space.yaml"
    paths["invalid_yaml"].write_text("learning_rate: {scale: log, low: 1.0e-4\nbeta: [")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(SPACE))
    depth = tmp_path / "depth.yaml"
    depth.write_text("units: {scale: choice, values: [4, 8]}\nlayers: {scale: int, low: 1, high: 2}\n")
    closed = f"127.0.0.1:{_closed_port()}"
    cases = [  # (arguments, the error's first line)
        ([f"--search_space={paths['unknown_flag']}"],
         f"FATAL Flags parsing error: flag --search_space={paths['unknown_flag']}: "
         f"--search_space={paths['unknown_flag']}: search space must be made of training flags "
         "other than model_dir, export_dir, export_name, export, evaluate_test, resume, "
         "overwrite, or units and layers. Received: search space=['no_such_flag']"),
        ([f"--search_space={paths['reserved_flag']}"],
         "search space must be made of training flags other than model_dir, export_dir, "
         "export_name, export, evaluate_test, resume, overwrite, or units and layers. Received: "
         "search space=['model_dir']"),
        ([f"--search_space={paths['invalid_yaml']}"],
         "search space file must be a readable YAML file (while parsing a flow mapping"),
        ([f"--search_space={depth}", "--hidden_units=16,8"],
         f"--hidden_units must not be given when --search_space={depth} has units and layers, "
         "which compose each trial's hidden units. Received: --hidden_units=16,8"),
        ([f"--search_space={good}", f"--ray_address={closed}"],
         "error: ray_address must be the HOST:PORT of a reachable Ray head (Connection refused). "
         f"Received: ray_address='{closed}'"),
        ([f"--search_space={good}", f"--ray_address={ray_cluster.address}", "--cpus_per_trial=2"],
         "error: cpus_per_trial must be at most the CPUs of the cluster's largest node (1). "
         "Received: cpus_per_trial=2.0"),
        ([f"--search_space={good}", "--scheduler=asha", "--trials_per_task=2"],
         "error: trials_per_task must be 0 or 1 with a scheduler (ASHA stops a Ray Tune trial, "
         "so each must be one of ours). Received: trials_per_task=2"),
    ]
    steps = [dict(argv=[os.path.join(REPO_ROOT, "scripts", "tune.py"), *args,
                        f"--search_dir={tmp_path / f'search{i}'}", *TRIALS])
             for i, (args, _) in enumerate(cases)]
    env = dict(script_env(), **ray_cluster.auth_env)
    ran = run_forked(steps, cwd=tmp_path, out_dir=str(tmp_path / "out"), env=env)
    assert len(ran) == len(cases)
    for i, ((args, message), (status, stdout, stderr)) in enumerate(zip(cases, ran)):
        assert status == 1, (args, stderr)
        lines = stderr.splitlines()
        assert message in lines[0], (message, stderr)
        if lines[0].startswith("FATAL"):
            assert lines[1:] == ["Pass --helpshort or --helpfull to see help on flags."]
        else:
            assert len(lines) == 1, stderr
        # No trial ran: at most the lock of the directory was taken.
        search_dir = tmp_path / f"search{i}"
        assert not search_dir.exists() or os.listdir(search_dir) == ["search.lock"]
        assert stdout == ""


def _closed_port():
    """A port nothing listens on (bound, then released)."""
    from benchmarks.ray_cluster import free_port

    return free_port()
