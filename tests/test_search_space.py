"""Sampling on the right scale and coarse-to-fine narrowing (docs/methods.md §9). Pure numpy, no TF."""

import json
import re

import numpy as np
import pytest

from tfnet import search_space as ss


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_log_uniform_puts_a_quarter_of_the_samples_in_each_decade():
    # Expected 1/4 per decade: r = log10 α is uniform on [-4, 0], each decade is a quarter of it.
    # With n = 4000 the binomial standard deviation of a fraction is sqrt(.25 * .75 / 4000) ≈ .007;
    # 0.03 is > 4 sigma. A linear-scale sampler would put ~90 % in [0.1, 1] and fail.
    alpha = np.array(ss.LogUniform("learning_rate", 1e-4, 1.0).sample(_rng(), 4000))
    assert alpha.min() >= 1e-4 and alpha.max() <= 1.0
    counts, _ = np.histogram(alpha, bins=[1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    np.testing.assert_allclose(counts / 4000, 0.25, atol=0.03)


def test_one_minus_log_uniform_puts_half_the_betas_in_the_last_decade():
    # r = log10(1 - β) is uniform on [-3, -1]; β in [0.99, 0.999] is r in [-3, -2], half of it.
    beta = np.array(ss.OneMinusLogUniform("beta", 0.9, 0.999).sample(_rng(1), 4000))
    assert beta.min() >= 0.9 and beta.max() <= 0.999
    assert np.mean(beta >= 0.99) == pytest.approx(0.5, abs=0.03)
    # Linear sampling would put only (0.999 - 0.99) / 0.099 ≈ 9 % there.
    assert np.mean(beta >= 0.99) > 0.4


def test_int_and_choice_stay_in_range_and_cover_it():
    space = ss.SearchSpace((
        ss.IntUniform("hidden_units", 4, 9),
        ss.Choice("batch_size", (32, 64, 128)),
        ss.Choice("optimizer", ("keras_adam", "keras_sgd")),
    ))
    trials = space.sample(_rng(2), 600)
    units = [t["hidden_units"] for t in trials]
    assert set(units) == set(range(4, 10))  # Both ends included, nothing outside.
    assert all(type(u) is int for u in units)  # Plain ints: they go to JSON and to flags.
    assert {t["batch_size"] for t in trials} == {32, 64, 128}
    assert all(type(t["batch_size"]) is int for t in trials)
    assert {t["optimizer"] for t in trials} == {"keras_adam", "keras_sgd"}
    # Uniform over the six integers: each about 100 of 600 (binomial sd ≈ 9).
    assert np.all(np.abs(np.bincount(units)[4:] - 100) < 40)


def test_sampling_is_random_and_reproducible_from_the_seed():
    space = ss.SearchSpace((ss.LogUniform("learning_rate", 1e-4, 1.0),))
    assert space.sample(_rng(3), 5) == space.sample(_rng(3), 5)
    assert space.sample(_rng(3), 5) != space.sample(_rng(4), 5)
    # Not a grid: no two of many samples coincide.
    values = [t["learning_rate"] for t in space.sample(_rng(5), 100)]
    assert len(set(values)) == 100


def _score(alpha):
    # A known objective peaked at α = 3e-3 on the log scale.
    return -(np.log10(alpha) - np.log10(3e-3)) ** 2


def test_coarse_to_fine_zooms_in_around_the_optimum_on_the_log_scale():
    space = ss.SearchSpace((ss.LogUniform("learning_rate", 1e-4, 1.0),
                            ss.OneMinusLogUniform("beta", 0.9, 0.999)))
    trials = space.sample(_rng(6), 20)
    best = sorted(trials, key=lambda t: _score(t["learning_rate"]), reverse=True)[:5]
    round2 = ss.narrow(space, best)
    alpha1, alpha2 = space["learning_rate"], round2["learning_rate"]
    assert alpha2.low <= 3e-3 <= alpha2.high
    width1 = np.log10(alpha1.high) - np.log10(alpha1.low)
    width2 = np.log10(alpha2.high) - np.log10(alpha2.low)
    assert width2 < 0.5 * width1
    # The new range is exactly the best trials' span on the log scale, padded by 0.1 × 4 decades.
    r_best = np.log10([t["learning_rate"] for t in best])
    np.testing.assert_allclose(np.log10([alpha2.low, alpha2.high]),
                               [max(-4, r_best.min() - 0.4), min(0, r_best.max() + 0.4)], atol=1e-12)
    # β is narrowed on the 1 - β log scale (the score ignores β, so only the best trials' span).
    r_beta = np.log10(1 - np.array([t["beta"] for t in best]))
    beta2 = round2["beta"]
    np.testing.assert_allclose(np.log10([1 - beta2.high, 1 - beta2.low]),
                               [max(-3, r_beta.min() - 0.2), min(-1, r_beta.max() + 0.2)], atol=1e-9)
    # Round 2 samples densely there: most of its samples beat round 1's median.
    round2_scores = _score(np.array([t["learning_rate"] for t in round2.sample(_rng(7), 200)]))
    assert np.mean(round2_scores > np.median(_score(np.array([t["learning_rate"] for t in trials])))) > 0.9


def test_narrow_integers_round_outwards_and_clip_and_choices_narrow_or_stay():
    space = ss.SearchSpace((ss.IntUniform("hidden_units", 1, 100), ss.Choice("batch_size", (32, 64, 128))))
    best = [{"hidden_units": 50, "batch_size": 64}, {"hidden_units": 95, "batch_size": 128}]
    narrowed = ss.narrow(space, best, padding=0.1)
    # [50 - 9.9, 95 + 9.9] = [40.1, 104.9] -> floor/ceil -> [40, 105] -> clipped to [40, 100].
    assert (narrowed["hidden_units"].low, narrowed["hidden_units"].high) == (40, 100)
    assert narrowed["batch_size"].values == (64, 128)
    kept = ss.narrow(space, best, narrow_choices=False)
    assert kept["batch_size"].values == (32, 64, 128)
    point = ss.narrow(space, best[:1], padding=0.0)
    assert (point["hidden_units"].low, point["hidden_units"].high) == (50, 50)


SPEC = {
    "learning_rate": {"scale": "log", "low": 1e-4, "high": 1.0},
    "beta": {"scale": "one_minus_log", "low": 0.9, "high": 0.999},
    "hidden_units": {"scale": "int", "low": 4, "high": 64},
    "batch_size": {"scale": "choice", "values": [32, 64, 128]},
}


def test_json_round_trip(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(SPEC))
    space = ss.SearchSpace.from_file(path)
    assert space.names == ("learning_rate", "beta", "hidden_units", "batch_size")
    assert space.to_dict() == SPEC
    assert ss.SearchSpace.from_dict(space.to_dict()) == space


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".YAML"])
def test_yaml_file_loads_like_json(tmp_path, suffix):
    # Block style, not JSON (which YAML also reads), so that a JSON reader would fail on it.
    path = tmp_path / f"space{suffix}"
    path.write_text("learning_rate: {scale: log, low: 1.0e-4, high: 1.0}\n"
                    "beta: {scale: one_minus_log, low: 0.9, high: 0.999}\n"
                    "hidden_units:\n  scale: int\n  low: 4\n  high: 64\n"
                    "batch_size:\n  scale: choice\n  values: [32, 64, 128]\n")
    assert ss.SearchSpace.from_file(path).to_dict() == SPEC


def test_the_example_files_load_to_the_same_space(repo_root):
    from_json = ss.SearchSpace.from_file(f"{repo_root}/examples/search_space.json")
    from_yaml = ss.SearchSpace.from_file(f"{repo_root}/examples/search_space.yaml")
    assert "learning_rate" in from_json.names
    # Equal dataclasses: same names, order, scales, bounds (1.0e-4 a float, not a string) and
    # choice values of the same types ("8" a string, 16 an int).
    assert from_yaml == from_json
    assert [type(v) for v in from_yaml["batch_size"].values] == [int] * 4


@pytest.mark.parametrize("name, text, reason", [
    ("missing.json", None, "a readable JSON file ([Errno 2] No such file or directory"),
    ("bad.json", '{"a": {"scale": "log",', "a readable JSON file (Expecting property name"),
    ("bad.yaml", "a: {scale: log\nb: [", "a readable YAML file (while parsing a flow mapping"),
    ("binary.yml", b"\xff\xfe\x00", "a readable YAML file ("),
])
def test_unreadable_or_invalid_file_is_named(tmp_path, name, text, reason):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    with pytest.raises(ValueError) as error:
        ss.SearchSpace.from_file(path)
    message = str(error.value)
    assert message.startswith(f"search space file must be {reason}")
    assert message.endswith(f"Received: search space file={str(path)!r}")
    assert "\n" not in message


def test_a_yaml_file_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- learning_rate\n")
    with pytest.raises(ValueError, match=re.escape(
            "search space must be a mapping {\"name\": {\"scale\": ..., ...}}. "
            "Received: search space=['learning_rate']")):
        ss.SearchSpace.from_file(path)


@pytest.mark.parametrize("suffix, text", [
    (".yaml", "learning_rate: {scale: log, low: 1e-4, high: 1.0}\n"),  # PyYAML: "1e-4", a string
    (".json", '{"learning_rate": {"scale": "log", "low": "1e-4", "high": 1.0}}'),
    (".json", '{"beta": {"scale": "one_minus_log", "low": 0.9, "high": "0.999"}}'),
])
def test_bounds_that_are_strings_are_refused_in_one_line_saying_how_to_write_them(
        tmp_path, suffix, text):
    path = tmp_path / f"space{suffix}"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        ss.SearchSpace.from_file(path)
    message = str(error.value)
    assert "range (low, high), both numbers (in YAML write 1.0e-4, not 1e-4" in message
    assert "\n" not in message


@pytest.mark.parametrize("make, message", [
    (lambda: ss.LogUniform("learning_rate", 0.0, 1.0),
     "learning_rate must be a log-uniform range (low, high) with 0 < low <= high. "
     "Received: learning_rate=(0.0, 1.0)"),
    (lambda: ss.OneMinusLogUniform("beta", 0.9, 1.0),
     "beta must be a one-minus-log-uniform range (low, high) with 0 <= low <= high < 1. "
     "Received: beta=(0.9, 1.0)"),
    (lambda: ss.IntUniform("hidden_units", 8, 4),
     "hidden_units must be an integer range (low, high) with low <= high. Received: hidden_units=(8, 4)"),
    (lambda: ss.IntUniform("hidden_units", 4.0, 8),
     "hidden_units must be an integer range (low, high) with low <= high. Received: hidden_units=(4.0, 8)"),
    (lambda: ss.Choice("batch_size", ()),
     "batch_size.values must be a non-empty list of distinct values. Received: batch_size.values=[]"),
    (lambda: ss.Choice("batch_size", (32, 32)),
     "batch_size.values must be a non-empty list of distinct values. Received: batch_size.values=[32, 32]"),
    (lambda: ss.Choice("batch_size", (32, "64")),
     "batch_size.values must be all of one type: str, int, float or bool. "
     "Received: batch_size.values=[32, '64']"),
    (lambda: ss.SearchSpace(()), "parameters must be a non-empty list with distinct names"),
    (lambda: ss.SearchSpace((ss.IntUniform("a", 1, 2), ss.IntUniform("a", 1, 3))),
     "parameters must be a non-empty list with distinct names. Received: parameters=['a', 'a']"),
    (lambda: ss.SearchSpace.from_dict({"a": {"scale": "linear", "low": 1, "high": 2}}),
     "a.scale must be one of log, one_minus_log, int, choice. Received: a.scale='linear'"),
    (lambda: ss.SearchSpace.from_dict({"a": {"scale": "log", "low": 1}}),
     "a must be given exactly the keys scale, high, low. Received: a=['low']"),
    (lambda: ss.SearchSpace.from_dict([1]), "search space must be a mapping"),
    (lambda: ss.narrow(ss.SearchSpace((ss.IntUniform("a", 1, 2),)), []),
     "best_trials must be a non-empty list of trials. Received: best_trials=[]"),
    (lambda: ss.narrow(ss.SearchSpace((ss.IntUniform("a", 1, 2),)), [{"a": 1}], padding=-0.1),
     "padding must be >= 0. Received: padding=-0.1"),
])
def test_bad_input_is_named(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()
