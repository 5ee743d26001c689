"""The search runner against a fake training script (fast, no TensorFlow in the trials).

The fake script follows train.py's contract: it reads ``--name=value`` flags, writes
``<model_dir>/flags.txt`` and ``results.json``, and its dev accuracy is a known function of the
learning rate peaked at α = 3e-3, so every expected ranking below is computed from that formula.
It exits 3 when ``hidden_units`` is 13 (a crash) and reports NaN losses when α > 0.3. With
``FAKE_SLEEP`` set it sleeps that many seconds first, long enough to kill the search meanwhile.
"""

import csv
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import runs_trial
from tfnet import search_space as ss
from tfnet import tuning
from tfnet.config import TrainConfig

FAKE_TRAIN = r'''
import json, math, os, sys, time
flags = {}
for arg in sys.argv[1:]:
    name, _, value = arg[2:].partition("=")
    flags[name] = value
model_dir = flags["model_dir"]
os.makedirs(model_dir, exist_ok=True)
with open(os.environ["FAKE_CALLS"], "a") as f:
    f.write(os.path.basename(model_dir) + "\n")
time.sleep(float(os.environ.get("FAKE_SLEEP", 0)))
if flags.get("hidden_units") == "13":
    sys.exit(3)
alpha = float(flags["learning_rate"])
accuracy = 1.0 / (1.0 + (math.log10(alpha) - math.log10(3e-3)) ** 2)
loss = float("nan") if alpha > 0.3 else 1.0 - accuracy
with open(os.path.join(model_dir, "flags.txt"), "w") as f:
    f.write("\n".join(a for a in sys.argv[1:]) + "\n")
with open(os.path.join(model_dir, "results.json"), "w") as f:
    json.dump(dict(dev_accuracy=accuracy, dev_loss=loss, best_dev_accuracy=accuracy,
                   train_accuracy=accuracy, train_loss=loss, epochs=int(flags["epochs"])), f)
'''


def fake_accuracy(alpha):
    return 1.0 / (1.0 + (math.log10(alpha) - math.log10(3e-3)) ** 2)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    calls = tmp_path / "calls.txt"
    calls.write_text("")
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    return script, calls


SPACE = ss.SearchSpace((ss.LogUniform("learning_rate", 1e-4, 1.0),
                        ss.IntUniform("hidden_units", 10, 16),
                        ss.Choice("batch_size", (32, 64))))


def _config(tmp_path, script, **overrides):
    settings = dict(search_dir=str(tmp_path / "search"), train_script=str(script),
                    base_flags={"epochs": 2, "dataset": "moons"}, rounds=2, trials_per_round=8)
    settings.update(overrides)
    return tuning.SearchConfig(**settings)


def _calls(calls):
    return calls.read_text().split()


@pytest.mark.parametrize("parallel", [1, 3], ids=["sequential", "parallel3"])
def test_search_records_ranks_and_zooms(tmp_path, fake, parallel):
    script, calls = fake
    config = _config(tmp_path, script, parallel=parallel)
    reports = []
    records = tuning.run_search(SPACE, config, report=lambda *a: reports.append(a))
    assert len(records) == 16 and len(_calls(calls)) == 16
    assert [r[1] for r in reports] == list(range(1, 17)) and {r[2] for r in reports} == {16}

    # Failures: exactly the trials the fake script's rules make fail, with their reasons.
    for record in records:
        crashed = record["values"]["hidden_units"] == 13
        diverged = record["values"]["learning_rate"] > 0.3
        assert (record["status"] == "failed") == (crashed or diverged)
        if crashed:
            assert record["error"].startswith("exit status 3")
        elif diverged:
            assert record["error"] == "non-finite or missing dev_loss=nan"

    # Sorted by the dev metric, failures last; the metric matches the fake's formula.
    ok = [r for r in records if r["status"] == "ok"]
    assert records[:len(ok)] == ok
    accuracies = [r["dev_accuracy"] for r in ok]
    assert accuracies == sorted(accuracies, reverse=True)
    for record in ok:
        assert record["dev_accuracy"] == pytest.approx(fake_accuracy(record["values"]["learning_rate"]))
    assert reports[-1][3]["dev_accuracy"] == accuracies[0]

    # Round 1 zoomed in on the log scale around round 0's best trial, was sampled from that
    # range, and so did better on average (8 trials are too few to promise it holds 3e-3; the
    # search-space tests check that with 20).
    state = json.loads((tmp_path / "search" / "search.json").read_text())
    round1 = ss.SearchSpace.from_dict(state["rounds"][1]["space"])["learning_rate"]
    best0 = next(r for r in ok if r["round"] == 0)
    assert round1.low <= best0["values"]["learning_rate"] <= round1.high
    # Round 1's range is the log10 span of round 0's best ceil(top_fraction × successes) trials,
    # padded by padding × round 0's width (4 decades) on each side and clipped to [-4, 0]; so its
    # width is at most that span + 2 × padding × 4, not merely "under 4 decades".
    ok0 = [r for r in ok if r["round"] == 0]  # Best first.
    top = ok0[:math.ceil(config.top_fraction * len(ok0))]
    assert 1 <= len(top) < len(ok0)
    r_top = np.log10([r["values"]["learning_rate"] for r in top])
    margin = config.padding * 4
    np.testing.assert_allclose(np.log10([round1.low, round1.high]),
                               [max(-4, r_top.min() - margin), min(0, r_top.max() + margin)],
                               atol=1e-12)
    assert np.log10(round1.high / round1.low) <= np.ptp(r_top) + 2 * margin + 1e-12
    for trial in state["rounds"][1]["trials"]:
        assert round1.low <= trial["values"]["learning_rate"] <= round1.high
    mean_accuracy = [np.mean([r["dev_accuracy"] for r in ok if r["round"] == k]) for k in (0, 1)]
    assert mean_accuracy[1] > mean_accuracy[0]

    # The table: CSV and JSON in the same order as the records.
    table = json.loads((tmp_path / "search" / "results.json").read_text())
    assert [r["trial"] for r in table] == [r["trial"] for r in records]
    with open(tmp_path / "search" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["trial"] for row in rows] == [r["trial"] for r in records]
    assert float(rows[0]["dev_accuracy"]) == accuracies[0]
    assert float(rows[0]["learning_rate"]) == records[0]["values"]["learning_rate"]

    # The best flagfile: the best trial's flags without model_dir / export.
    best = (tmp_path / "search" / "best_flags.txt").read_text().splitlines()
    flag_lines = [line for line in best if not line.startswith("#")]
    assert f"--learning_rate={records[0]['values']['learning_rate']!r}" in flag_lines
    assert "--epochs=2" in flag_lines
    assert not any(line.startswith(("--model_dir", "--noexport", "--noevaluate_test"))
                   for line in flag_lines)


def test_trial_flags_override_base_and_format_values():
    flags = tuning.trial_flags({"learning_rate": 0.1 + 0.2, "deterministic": True, "epochs": 5},
                               {"epochs": 2, "dataset": "moons", "histograms": False}, "/runs/t0")
    assert flags == ["--epochs=5", "--dataset=moons", "--nohistograms",
                     "--learning_rate=0.30000000000000004", "--deterministic",
                     "--model_dir=/runs/t0", "--noexport", "--noevaluate_test"]


def test_trial_flags_compose_hidden_units_from_units_and_layers():
    flags = tuning.trial_flags({"learning_rate": 0.01, "units": 8, "layers": 3}, {"epochs": 2},
                               "/runs/t0")
    assert flags == ["--epochs=2", "--learning_rate=0.01", "--hidden_units=8,8,8",
                     "--model_dir=/runs/t0", "--noexport", "--noevaluate_test"]


def _trial_hidden_units(model_dir):
    """The --hidden_units a trial received, as integers (the fake script saves its flags)."""
    with open(f"{model_dir}/flags.txt") as f:
        [value] = [line.split("=", 1)[1] for line in f.read().splitlines()
                   if line.startswith("--hidden_units=")]
    return [int(u) for u in value.split(",")]


@pytest.mark.parametrize("units", [ss.IntUniform("units", 4, 9), ss.Choice("units", (8, 32))],
                         ids=["int_units", "choice_units"])
def test_search_over_units_and_layers_gives_each_trial_its_hidden_units(tmp_path, fake, units):
    script, _ = fake
    space = ss.SearchSpace((ss.LogUniform("learning_rate", 1e-4, 1.0), units,
                            ss.IntUniform("layers", 1, 3)))
    records = tuning.run_search(space, _config(tmp_path, script, trials_per_round=12))
    assert len(records) == 24
    allowed_units = (set(range(4, 10)) if isinstance(units, ss.IntUniform) else {8, 32})
    depths = set()
    for record in records:
        sampled = record["values"]
        hidden_units = _trial_hidden_units(record["model_dir"])
        # The flag the trial got is the sampled width repeated once per sampled layer ...
        assert hidden_units == [sampled["units"]] * sampled["layers"]
        # ... and both stay in round 0's ranges in every round.
        assert set(hidden_units) <= allowed_units and 1 <= len(hidden_units) <= 3
        depths.add(len(hidden_units))
    assert len(depths) > 1  # Depth was searched, not fixed.


@pytest.mark.parametrize("parameters, base_flags, message", [
    ((ss.IntUniform("layers", 1, 3),), {},
     "search space must be given units and layers together (they compose hidden_units). "
     "Received: search space=['layers']"),
    ((ss.IntUniform("units", 4, 8), ss.IntUniform("layers", 1, 3),
      ss.Choice("hidden_units", ("8",))), {},
     "search space must be free of hidden_units when it has units and layers (they compose "
     "it). Received: search space=['units', 'layers', 'hidden_units']"),
    ((ss.IntUniform("units", 4, 8), ss.IntUniform("layers", 1, 3)), {"hidden_units": "16,8"},
     "base_flags must be free of hidden_units when the space has units and layers (they compose "
     "it). Received: base_flags={'hidden_units': '16,8'}"),
    ((ss.LogUniform("units", 4, 64), ss.IntUniform("layers", 1, 3)), {},
     "units.scale must be int or choice. Received: units.scale='log'"),
    ((ss.Choice("units", ("8", "16")), ss.IntUniform("layers", 1, 3)), {},
     "units must be sampled from integers >= 1. "
     "Received: units={'scale': 'choice', 'values': ['8', '16']}"),
    ((ss.IntUniform("units", 4, 8), ss.IntUniform("layers", 0, 3)), {},
     "layers must be sampled from integers >= 1. "
     "Received: layers={'scale': 'int', 'low': 0, 'high': 3}"),
], ids=["layers_alone", "with_hidden_units", "with_fixed_hidden_units", "log_units",
        "string_units", "zero_layers"])
def test_bad_units_and_layers_are_named(tmp_path, fake, parameters, base_flags, message):
    script, calls = fake
    config = _config(tmp_path, script, base_flags=base_flags)
    with pytest.raises(ValueError, match=re.escape(message)):
        tuning.run_search(ss.SearchSpace(parameters), config)
    assert _calls(calls) == []  # Refused before any trial.


def test_interrupted_search_resumes_without_rerunning_finished_trials(tmp_path, fake):
    script, calls = fake
    config = _config(tmp_path, script, parallel=2)

    def interrupt_after_three(record, done, total, best):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tuning.run_search(SPACE, config, report=interrupt_after_three)
    state = json.loads((tmp_path / "search" / "search.json").read_text())
    finished = set(state["records"])
    assert len(finished) == 3
    assert state["running"] == {}  # The trial running at the interruption was killed.
    started_before = _calls(calls)
    # The trial killed mid-run (parallel 2) has no record; its leftovers go before it reruns.
    stale = tmp_path / "search" / "round0-trial007" / "stale.txt"
    stale.parent.mkdir(exist_ok=True)
    stale.write_text("from an interrupted attempt")

    records = tuning.run_search(SPACE, config)
    rerun = _calls(calls)[len(started_before):]
    assert len(records) == 16
    assert not finished & set(rerun)
    assert sorted(rerun) == sorted({r["trial"] for r in records} - finished)
    assert not stale.exists()

    # Adding a round resumes too: only the new round's trials run.
    before = len(_calls(calls))
    records = tuning.run_search(SPACE, _config(tmp_path, script, rounds=3))
    assert len(records) == 24
    assert all(name.startswith("round2-") for name in _calls(calls)[before:])


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="recognises trials through /proc")
def test_trials_left_running_by_a_killed_search_are_killed_before_they_rerun(
        tmp_path, fake, repo_root, caplog):
    script, calls = fake
    config = _config(tmp_path, script, parallel=2)
    # The same search in a process of its own, whose trials sleep until it is SIGKILLed.
    program = (
        "from tfnet import search_space as ss, tuning\n"
        f"space = ss.SearchSpace.from_dict({SPACE.to_dict()!r})\n"
        f"config = tuning.SearchConfig(search_dir={config.search_dir!r}, "
        f"train_script={config.train_script!r}, base_flags={config.base_flags!r}, parallel=2)\n"
        "tuning.run_search(space, config)\n")
    search = subprocess.Popen([sys.executable, "-c", program],
                              env=dict(os.environ, PYTHONPATH=repo_root, FAKE_SLEEP="120"))
    state_path = tmp_path / "search" / "search.json"
    orphans = {}
    try:
        deadline = time.monotonic() + 120
        while len(orphans) < 2:
            assert time.monotonic() < deadline and search.poll() is None, "no trials started"
            time.sleep(0.2)
            if state_path.exists():
                orphans = json.loads(state_path.read_text())["running"]
        # While that search lives, a second one of the same directory is refused ...
        with pytest.raises(ValueError, match=re.escape(
                f"search_dir must be free of another running search (process {search.pid} on "
                f"{socket.gethostname()} holds search.lock). "
                f"Received: search_dir={config.search_dir!r}")):
            tuning.run_search(SPACE, config)
        # ... and once it is killed outright, its trials (own sessions) keep running.
        search.kill()
        search.wait()
        assert all(runs_trial(o["pid"], o["model_dir"]) for o in orphans.values())

        with caplog.at_level("WARNING"):
            records = tuning.run_search(SPACE, config)  # FAKE_SLEEP unset: quick trials.
        assert not any(runs_trial(o["pid"], o["model_dir"]) for o in orphans.values())
        for trial, orphan in orphans.items():
            assert f"Killing trial {trial} (pid {orphan['pid']})" in caplog.text
        assert len(records) == 16
        # The two killed trials started twice (killed, then re-run); every other one once.
        started = _calls(calls)
        assert sorted(name for name in set(started) if started.count(name) == 2) == sorted(orphans)
        assert len(started) == 18
        assert json.loads(state_path.read_text())["running"] == {}
    finally:
        # Leave no sleeping trial behind when a check above fails.
        search.kill()
        search.wait()
        leftovers = list(orphans.values())
        if state_path.exists():
            leftovers += json.loads(state_path.read_text())["running"].values()
        for orphan in leftovers:
            if runs_trial(orphan["pid"], orphan["model_dir"]):
                os.killpg(orphan["pid"], signal.SIGKILL)


def test_resuming_a_different_search_is_refused(tmp_path, fake):
    script, _ = fake
    tuning.run_search(SPACE, _config(tmp_path, script, rounds=1, trials_per_round=1))
    with pytest.raises(ValueError, match=re.escape(
            "search_dir must be a new directory or one holding the same search (it differs in "
            "seed)")):
        tuning.run_search(SPACE, _config(tmp_path, script, rounds=1, trials_per_round=1, seed=1))


def test_a_round_with_no_success_keeps_its_space(tmp_path, fake):
    script, _ = fake
    crash_space = ss.SearchSpace((ss.LogUniform("learning_rate", 1e-4, 1.0),
                                  ss.IntUniform("hidden_units", 13, 13)))
    records = tuning.run_search(crash_space, _config(tmp_path, script, trials_per_round=2))
    assert [r["status"] for r in records] == ["failed"] * 4
    state = json.loads((tmp_path / "search" / "search.json").read_text())
    assert state["rounds"][1]["space"] == state["rounds"][0]["space"]
    assert not (tmp_path / "search" / "best_flags.txt").exists()


@pytest.mark.parametrize("overrides, message", [
    ({"train_script": "/nonexistent/train.py"},
     "train_script must be an existing file. Received: train_script='/nonexistent/train.py'"),
    ({"rounds": 0}, "rounds must be an integer >= 1. Received: rounds=0"),
    ({"trials_per_round": 2.0}, "trials_per_round must be an integer >= 1. Received: trials_per_round=2.0"),
    ({"parallel": 0}, "parallel must be an integer >= 1. Received: parallel=0"),
    ({"metric": "test_accuracy"},
     "metric must be one of dev_accuracy, best_dev_accuracy, dev_loss. Received: metric='test_accuracy'"),
    ({"top_fraction": 0.0}, "top_fraction must be in (0, 1]. Received: top_fraction=0.0"),
    ({"padding": -1.0}, "padding must be >= 0. Received: padding=-1.0"),
    ({"base_flags": {"model_dir": "x", "epochs": 1}},
     "base_flags must be free of model_dir and export (the search sets them). "
     "Received: base_flags=['model_dir']"),
])
def test_bad_config_is_named(tmp_path, fake, overrides, message):
    script, _ = fake
    with pytest.raises(ValueError, match=re.escape(message)):
        _config(tmp_path, script, **overrides)


def _experiment(space, directory):
    """The HParams experiment that ``write_hparams_config`` writes for ``space``."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import metadata

    tuning.write_hparams_config(space, str(directory))
    [path] = list(directory.glob("events.out.tfevents.*"))
    [experiment] = [metadata.parse_experiment_plugin_data(value.metadata.plugin_data.content)
                    for event in tf.compat.v1.train.summary_iterator(str(path))
                    for value in event.summary.value if value.tag == "_hparams_/experiment"]
    return experiment


def test_hparams_config_declares_each_parameter_with_its_domain(tmp_path):
    space = ss.SearchSpace((ss.LogUniform("learning_rate", 1e-4, 1.0),
                            ss.OneMinusLogUniform("beta", 0.9, 0.999),
                            ss.IntUniform("epochs", 2, 5),
                            ss.IntUniform("hidden_units", 4, 32),
                            ss.Choice("batch_size", (32, 64)),
                            ss.Choice("optimizer", ("keras_adam", "keras_sgd"))))
    experiment = _experiment(space, tmp_path)
    infos = {info.name: info for info in experiment.hparam_infos}
    assert list(infos) == list(space.names)
    assert (infos["learning_rate"].domain_interval.min_value,
            infos["learning_rate"].domain_interval.max_value) == (1e-4, 1.0)
    assert (infos["beta"].domain_interval.min_value,
            infos["beta"].domain_interval.max_value) == (0.9, 0.999)
    assert (infos["epochs"].domain_interval.min_value,
            infos["epochs"].domain_interval.max_value) == (2, 5)
    # train.py logs hidden_units as a string ("16,8"), so an int range there gets no domain.
    assert infos["hidden_units"].WhichOneof("domain") is None
    assert [v.number_value for v in infos["batch_size"].domain_discrete.values] == [32, 64]
    assert [v.string_value for v in infos["optimizer"].domain_discrete.values] == [
        "keras_adam", "keras_sgd"]
    assert [(m.name.group, m.name.tag) for m in experiment.metric_infos] == [
        ("dev", "epoch_accuracy"), ("dev", "epoch_loss"),
        ("train", "epoch_accuracy"), ("train", "epoch_loss")]


@pytest.mark.parametrize("parameter, logged", [
    (ss.Choice("hidden_units", (8, 16)), ["8", "16"]),
    (ss.Choice("hidden_units", ("16,8", "32")), ["16,8", "32"]),
    (ss.Choice("keep_prob", (0.5, 1.0)), ["0.5", "1.0"]),
    (ss.Choice("keep_prob", ("0.8,0.9", "1")), ["0.8,0.9", "1.0"]),  # 1 is parsed as 1.0.
    (ss.LogUniform("keep_prob", 0.5, 1.0), None),
    (ss.IntUniform("hidden_units", 4, 32), None),
], ids=["int_units", "string_units", "float_keep_prob", "string_keep_prob", "range_keep_prob",
        "range_units"])
def test_hparams_domains_of_tuple_fields_are_the_strings_the_trials_log(tmp_path, parameter,
                                                                       logged):
    # train.py logs TrainConfig's tuple fields as ",".join(map(str, value)) (config.hparams), so
    # a numeric domain would never match a trial's value and the dashboard would hide it.
    [info] = _experiment(ss.SearchSpace((parameter,)), tmp_path).hparam_infos
    if logged is None:
        assert info.WhichOneof("domain") is None
    else:
        assert [v.string_value for v in info.domain_discrete.values] == sorted(logged)  # hp sorts.
        assert {v.WhichOneof("kind") for v in info.domain_discrete.values} == {"string_value"}
        # The strings are those of a TrainConfig built the way train.py parses the flag.
        for value, string in zip(parameter.values, logged):
            element = type(getattr(TrainConfig(), parameter.name)[0])
            parsed = tuple(element(v) for v in str(value).split(","))
            config = TrainConfig(**{parameter.name: parsed})
            assert config.hparams()[parameter.name] == string


def test_hparams_config_declares_units_and_layers_as_the_hidden_units_trials_log(tmp_path):
    # train.py logs hidden_units="8,8,8" and no units or layers, so the dashboard's column is
    # hidden_units, in the place of the first of them.
    space = ss.SearchSpace((ss.LogUniform("learning_rate", 1e-4, 1.0),
                            ss.IntUniform("layers", 1, 3), ss.Choice("units", (8, 16)),
                            ss.Choice("batch_size", (32, 64))))
    infos = _experiment(space, tmp_path).hparam_infos
    assert [info.name for info in infos] == ["learning_rate", "hidden_units", "batch_size"]
    assert infos[1].WhichOneof("domain") is None
