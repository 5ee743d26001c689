"""The trial runner (tfnet.trials) on this session's Ray (conftest.ray_local): each trial's outcome
with its reason, SIGINT stopping the run cleanly, tasks of several trials (split, sized, and
restarted after their worker died without training a finished trial again), and the settings it
refuses.

(Restarts after a node dies, on a two-node cluster: tests/test_tune_script.py.)
"""

import dataclasses
import json
import os
import re
import signal
import threading
import time

import pytest

from helpers import assert_same_final_state, latest_checkpoint_number
from tfnet import config as config_lib
from tfnet import training, trials
from tfnet.config import TrainConfig
from tfnet.trials import runner


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


def _tasks(trials, size, slots=None):
    """``trials`` split into tasks as the run's queue cuts them, one after another."""
    split, waiting = [], list(trials)
    while waiting:
        task, waiting = runner.take_task(waiting, size, slots)
        split.append(task)
    return split


def test_tasks_keep_each_trial_once_and_shrink_to_single_trials_at_the_end():
    names = [f"t{i:03d}" for i in range(168)]  # the default study's tuning phase
    split = _tasks(names, 8, slots=2)
    assert sorted(name for task in split for name in task) == names
    sizes = [len(task) for task in split]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == 8
    # no slot idles through a long last task: each task is at most half of a slot's share of
    # what remains when it starts, so the last four are single trials
    for index, size in enumerate(sizes):
        assert size == max(1, min(8, sum(sizes[index:]) // 4))
    assert sizes[-4:] == [1, 1, 1, 1]
    # each task of several trials mixes the list (a study lists its problems one after another):
    # it holds trials from each third of it
    for task in split:
        if len(task) >= 3:
            assert {int(name[1:]) * 3 // 168 for name in task} == {0, 1, 2}, task
    # --trials_per_task: every task that size, the last what is left
    explicit = _tasks(names[:11], 3)
    assert [len(task) for task in explicit] == [3, 3, 3, 2]
    assert sorted(name for task in explicit for name in task) == names[:11]
    assert _tasks(names[:11], 1, slots=2) == [[name] for name in names[:11]]  # in order


def test_the_automatic_task_size_keeps_eight_tasks_per_slot_at_most_eight_trials(ray_local,
                                                                                 tmp_path):
    auto = trials.ClusterConfig()  # this session's Ray: one CPU, one slot
    assert [runner.task_size(auto, count) for count in (1, 15, 16, 24, 64, 65, 1000)] == [
        1, 1, 2, 3, 8, 8, 8]
    halves = trials.ClusterConfig(cpus_per_trial=0.5)  # two slots
    assert runner.task_size(halves, 32) == 2
    assert runner.task_size(trials.ClusterConfig(trials_per_task=5), 3) == 5
    asha = trials.Asha(max_epochs=3)
    assert runner.task_size(auto, 1000, asha) == 1
    with pytest.raises(ValueError, match=re.escape(
            "trials_per_task must be 0 or 1 with a scheduler (ASHA stops a Ray Tune trial, so "
            "each must be one of ours). Received: trials_per_task=2")):
        trials.run([_trial("a", tmp_path)], tmp_path / "tune",
                   trials.ClusterConfig(trials_per_task=2), scheduler=asha)


STEPS_PER_EPOCH = 13  # moons: 800 training examples, b = 64


def _checkpointed_trial(name, tmp_path, learning_rate):
    config = TrainConfig(optimizer="keras_adam", epochs=8, learning_rate=learning_rate,
                         deterministic=True, checkpoint_every_steps=STEPS_PER_EPOCH,
                         checkpoint_every_seconds=0.0, export=False, evaluate_test=False,
                         model_dir=str(tmp_path / name))
    return trials.Trial(name, config)


def test_a_task_whose_worker_dies_resumes_its_trial_and_skips_the_finished_one(ray_local,
                                                                             tmp_path):
    first, second = (_checkpointed_trial(name, tmp_path, rate)
                     for name, rate in (("first", 0.01), ("second", 0.003)))
    killed = {}

    def kill_the_worker_in_the_second_trial():
        # Once the second trial has written its third checkpoint (it reports each one to Tune
        # before training on), SIGKILL the Ray worker training it: the run's lock names it.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if latest_checkpoint_number(str(tmp_path / "second")) >= 3 * STEPS_PER_EPOCH:
                holder = re.match(r"process (\d+) on ",
                                  (tmp_path / "second" / "run.lock").read_text())
                if holder:
                    killed["first_results"] = (
                        tmp_path / "first" / "results.json").stat().st_mtime_ns
                    os.kill(int(holder.group(1)), signal.SIGKILL)
                    killed["pid"] = int(holder.group(1))
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_worker_in_the_second_trial)
    killer.start()
    try:
        outcomes = trials.run([first, second], tmp_path / "tune",
                              trials.ClusterConfig(trials_per_task=2))
    finally:
        killer.join()
    assert "pid" in killed, "the second trial never checkpointed"
    assert [o.status for o in outcomes] == ["ok", "ok"], outcomes
    # The finished trial was not trained again: one attempt, its results untouched ...
    assert len(outcomes[0].attempts) == 1
    assert (tmp_path / "first" / "results.json").stat().st_mtime_ns == killed["first_results"]
    # ... and the one the worker was training went on from Tune's checkpoint ...
    attempts = outcomes[1].attempts
    assert len(attempts) == 2 and attempts[0]["first_epoch"] == 1, attempts
    assert attempts[1]["first_epoch"] >= 3, attempts
    # ... to end as it would have uninterrupted.
    reference = tmp_path / "reference"
    training.train(dataclasses.replace(second.config, model_dir=str(reference)), verbose=0)
    expected, actual = (json.loads((path / "results.json").read_text())
                        for path in (reference, tmp_path / "second"))
    for history in (expected["history"], actual["history"]):
        for epoch in history:
            epoch.pop("seconds")
    assert actual["history"] == expected["history"]
    assert_same_final_state(str(reference), str(tmp_path / "second"))


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
    (dict(trials_per_task=1.5),
     "trials_per_task must be a non-negative integer. Received: trials_per_task=1.5"),
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


def test_tune_as_tfnet_runs_it_registers_every_reported_checkpoint_once(ray_local, tmp_path):
    # Ray 2.60's result buffering (TUNE_RESULT_BUFFER_LENGTH > 1) registered some checkpoints of
    # this trainable several times and others never, deleting the latest from storage: a task
    # restarted from it would have found nothing. tfnet runs Tune without it.
    from ray import tune

    def back_to_back_checkpoints(config):
        # Three times over: two epochs, then two checkpoints at once (a trial's outcome, then
        # the next trial's: what a task reports whose next trial trains nothing).
        import tempfile

        for round_ in range(3):
            for epoch in range(2):
                tune.report({"round": round_, "epoch": epoch})
            for _ in range(2):
                state = tempfile.mkdtemp()
                with open(os.path.join(state, "state.txt"), "w") as f:
                    f.write(str(round_))
                tune.report({"round": round_}, checkpoint=tune.Checkpoint.from_directory(state))

    class Checkpoints(tune.Callback):
        def __init__(self):
            self.names = []

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            self.names.append(os.path.basename(checkpoint.path))

    seen = Checkpoints()  # (defined here, the trainable is pickled by value for the workers)
    with runner._environment(runner._TUNE_ENVIRONMENT):
        result = tune.Tuner(back_to_back_checkpoints, run_config=tune.RunConfig(
            name="tune", storage_path=str(tmp_path), verbose=0, callbacks=[seen],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1))).fit()
    assert not result.errors
    assert seen.names == [f"checkpoint_{index:06d}" for index in range(6)]
    latest = result[0].checkpoint
    with open(os.path.join(latest.path, "state.txt")) as f:
        assert f.read() == "2"


def test_a_trial_reports_its_epochs_in_batches_and_at_once_with_a_checkpoint(tmp_path,
                                                                             monkeypatch):
    from ray import tune

    from tfnet.trials import worker

    sent = []  # (result, the checkpoint's task.json or None) per report
    monkeypatch.setattr(tune, "report", lambda result, checkpoint=None: sent.append((
        result, checkpoint and json.loads(open(os.path.join(checkpoint.path,
                                                            worker.TASK_FILE)).read()))))
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)

    def epoch(number):
        return {key: float(number) for key in worker.EPOCH_KEYS}

    report = worker._Report("a", str(run_dir), "node", ["done"], every_seconds=3600.0)
    report(epoch(1))
    report(epoch(2))
    assert sent == []  # batched: not an hour yet
    (run_dir / "checkpoints" / "checkpoint").write_text("ckpt-3")  # tfnet checkpointed
    report(epoch(3))
    report(epoch(4))
    (result, task), = sent  # at once, with the state, every epoch since the last report
    assert [e["epoch"] for e in result["epochs"]] == [1, 2, 3] and result["epoch"] == 3
    assert task == {"finished": ["done"], "training": "a"}
    last = report.result()  # what the outcome's report carries: the rest
    assert [e["epoch"] for e in last["epochs"]] == [4] and last["epoch"] == 4
    assert (last["trial"], last["node_id"]) == ("a", "node")
    assert report.result()["epochs"] == []

    sent.clear()
    each = worker._Report("b", str(tmp_path / "other"), "node", [], every_seconds=0.0)
    for number in (1, 2):
        each(epoch(number))
    assert [[e["epoch"] for e in r["epochs"]] for r, _ in sent] == [[1], [2]]  # under ASHA


def test_trials_an_outcome_asks_for_run_in_the_same_experiment(ray_local, tmp_path):
    first, second, third = (_trial(name, tmp_path, learning_rate=0.1)
                            for name in ("first", "second", "third"))
    asked = {"first": [second, third]}  # the study's seeds, once a learning rate is chosen

    outcomes = trials.run([first], tmp_path / "tune", on_outcome=lambda o: asked.get(o.name))
    assert [(o.name, o.status) for o in outcomes] == [("first", "ok"), ("second", "ok"),
                                                      ("third", "ok")]
    assert all((tmp_path / name / "results.json").exists() for name in ("second", "third"))

    again = _trial("first", tmp_path / "again", learning_rate=0.1)
    with pytest.raises(ValueError, match=re.escape(
            "trial names must be distinct. Received: ['first'] after ['first']")):
        trials.run([again], tmp_path / "tune", on_outcome=lambda o: [again])
