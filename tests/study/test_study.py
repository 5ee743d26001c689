"""The optimiser study: the protocol (choose α by dev, read test only for the chosen α's seeds),
its summaries by hand, and a tiny study end to end on Ray (conftest.ray_local), resumed."""

import csv
import math

import numpy as np
import pytest

from tfnet import config as config_lib
from tfnet import study
from tfnet.study import protocol, report


def _record(rate, dev, loss=0.5, test=None, diverged=False):
    return dict(learning_rate=rate, dev_accuracy=dev, dev_loss=loss, test_accuracy=test,
                diverged=diverged)


def test_the_learning_rate_is_chosen_by_dev_accuracy_never_by_test():
    records = [_record(0.01, 0.90, test=0.99), _record(0.1, 0.95, test=0.80),
               _record(1.0, math.nan, diverged=True)]
    assert protocol.choose(records) == 0.1  # the test-best 0.01 is not chosen
    # Ties on dev accuracy: the lower dev loss, then the smaller α.
    assert protocol.choose([_record(0.1, 0.9, 0.4), _record(0.01, 0.9, 0.3)]) == 0.01
    assert protocol.choose([_record(0.1, 0.9, 0.3), _record(0.01, 0.9, 0.3)]) == 0.01
    assert protocol.choose([_record(1.0, 0.5, diverged=True)]) is None


def test_the_grid_spans_each_optimisers_range_on_a_log_scale():
    assert protocol.learning_rates("gd", 4) == pytest.approx([1e-3, 1e-2, 1e-1, 1.0])
    assert protocol.learning_rates("keras_adam", 3) == pytest.approx([1e-4, 10**-2.5, 1e-1])
    assert protocol.learning_rates("adam", 1) == pytest.approx([10**-2.5])


def test_the_performance_profile_by_hand():
    config = study.StudyConfig(problems=("a", "b"), optimizers=("gd", "adam"))
    # Problem a: gd 100 steps, adam 50 (best); problem b: gd 30 (best), adam never.
    summary = {("a", "gd"): {"steps_to_target": 100.0}, ("a", "adam"): {"steps_to_target": 50.0},
               ("b", "gd"): {"steps_to_target": 30.0}, ("b", "adam"): {"steps_to_target": math.inf}}
    profile = report.performance_profile(config, summary, taus=[1.0, 1.9, 2.0, 100.0])
    assert profile == {"gd": [0.5, 0.5, 1.0, 1.0], "adam": [0.5, 0.5, 0.5, 0.5]}


def test_spread_quartiles_and_overlap():
    assert protocol.quartiles([1.0, 2.0, 3.0, 4.0, None]) == pytest.approx((1.75, 2.5, 3.25))
    assert protocol.differ_beyond_spread((0.90, 0.91, 0.92), (0.93, 0.94, 0.95))
    assert not protocol.differ_beyond_spread((0.90, 0.92, 0.94), (0.93, 0.94, 0.95))


@pytest.mark.parametrize("fields, message", [
    (dict(optimizers=("gd", "sgd")), "optimizers must be a comma-separated list of gd, momentum"),
    (dict(lr_points=0), "lr_points must be a positive integer. Received: lr_points=0"),
    (dict(problems=("moons", "moons")), "problems must be a comma-separated list of distinct"),
])
def test_bad_settings_are_refused_naming_the_flag(fields, message):
    with pytest.raises(ValueError, match=message):
        config_lib.check_fields(study.StudyConfig(**fields))


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_a_tiny_study_chooses_by_dev_reads_test_for_the_chosen_and_resumes(ray_local, tmp_path):
    config = study.StudyConfig(problems=("moons",), optimizers=("gd", "adam"), seeds=2,
                               lr_points=2, epochs=3, output_dir=str(tmp_path))
    said = []
    text, paths = study.run(config, say=said.append)
    rows = _rows(paths["results.csv"])
    tuning = [r for r in rows if r["phase"] == "tuning"]
    seeds = [r for r in rows if r["phase"] == "seeds"]
    assert len(tuning) == 4 and len(seeds) == 4
    assert all(r["test_accuracy"] == "" for r in tuning)  # test never read while choosing
    for optimizer in ("gd", "adam"):
        mine = [r for r in tuning if r["optimizer"] == optimizer]
        best = max(mine, key=lambda r: (float(r["dev_accuracy"]), -float(r["dev_loss"])))
        chosen = {r["learning_rate"] for r in seeds if r["optimizer"] == optimizer}
        assert chosen == {best["learning_rate"]}  # the dev-best α, and only it, got seeds
        mine_seeds = [r for r in seeds if r["optimizer"] == optimizer]
        assert sorted(int(r["seed"]) for r in mine_seeds) == [0, 1]
        assert all(0 < float(r["test_accuracy"]) <= 1 for r in mine_seeds)
        median = np.median([float(r["test_accuracy"]) for r in mine_seeds])
        assert f"| {optimizer} | {float(best['learning_rate']):.3g} | {median:.4f} [" in text
    assert "moons: network 64-32, b=64, 3 epochs, target dev accuracy 0.97" in text
    for name in ("sensitivity.png", "profile.png"):
        assert open(paths[name], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())  # HParams
    assert not (tmp_path / "tune").exists()  # Ray Tune's files go with its runs

    said.clear()  # run again: every trial is read back, none trained
    again, _ = study.run(config, say=said.append)
    assert "4 of 4 trials already finished" in said  # the tuning trials, and their seeds
    assert not [line for line in said if line.startswith("[")]  # nothing trained
    assert _rows(paths["results.csv"]) == rows and again == text
