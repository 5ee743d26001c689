"""The search (tfnet.tuning): real tfnet trials on Ray (this session's, conftest.ray_local), and
its parts that need no Ray (the space's check, each trial's configuration, the HParams experiment).

Trials are tiny: moons, gd, 2 epochs. The learning rate is sampled over [1e-2, 1e5] so that the
large ones diverge (a non-finite cost: the trial fails with tfnet's NonFiniteError), and the
dataset over moons and a name no dataset has (the trial fails in its worker with
DatasetNotFoundError). Every expected figure is read back from what each trial wrote itself
(results.json, flags.txt, its TensorBoard events), so the checks are that the search's records,
ranking and files agree with them.
"""

import csv
import json
import math
import os
import re

import numpy as np
import pytest

from tfnet import search_space as ss
from tfnet import trials, tuning
from tfnet.config import TrainConfig

SPACE = ss.SearchSpace((ss.LogUniform("learning_rate", 1e-2, 1e5),
                        ss.Choice("units", (4, 8)), ss.IntUniform("layers", 1, 2),
                        ss.Choice("dataset", ("moons", "no_such_set"))))
BASE = TrainConfig(optimizer="gd", epochs=2, deterministic=True)


def _config(tmp_path, **overrides):
    settings = dict(search_dir=str(tmp_path / "search"), base_config=BASE, rounds=2,
                    trials_per_round=4, seed=275)
    settings.update(overrides)
    return tuning.SearchConfig(**settings)


def _results(record):
    with open(f"{record['model_dir']}/results.json") as f:
        return json.load(f)


def _flag(record, name):
    """The value of --name in the trial's flags.txt (what its run was given)."""
    with open(f"{record['model_dir']}/flags.txt") as f:
        [value] = [line.split("=", 1)[1] for line in f.read().splitlines()
                   if line.startswith(f"--{name}=")]
    return value


@pytest.fixture(scope="module")
def search(ray_local, tmp_path_factory):
    """The search of SPACE, two rounds of 4 trials, and what it reported after each trial.
    (A search killed and resumed: tests/test_tune_script.py.)"""
    tmp_path = tmp_path_factory.mktemp("tuning")
    reports = []
    records = tuning.run_search(SPACE, _config(tmp_path), report=lambda *a: reports.append(a))
    return tmp_path, _config(tmp_path), records, reports


def test_every_trial_is_recorded_with_its_outcome_and_ranked_by_dev_accuracy(search):
    tmp_path, config, records, reports = search
    assert len(records) == 8
    assert [r[1] for r in reports] == list(range(1, 9)) and {r[2] for r in reports} == {8}
    # Failures: every trial of the missing dataset, in its worker, and the diverged ones.
    reasons = {}
    for record in records:
        if record["values"]["dataset"] == "no_such_set":
            assert record["status"] == "failed"
            assert record["error"].startswith("DatasetNotFoundError: ")
        elif record["status"] == "failed":
            assert record["error"].startswith("NonFiniteError: non-finite cost or gradient")
            assert record["values"]["learning_rate"] > 1  # gd on moons is fine below 1
        reasons[record["error"].split(":")[0]] = record["status"]
    # Seed 275's round 0: a missing dataset, α = 3874 (diverges), α = 0.016 and 0.02 (train).
    assert set(reasons) == {"", "DatasetNotFoundError", "NonFiniteError"}
    # Those that ran to the end come first, by the dev accuracy their runs recorded.
    ok = [r for r in records if r["status"] == "ok"]
    assert records[:len(ok)] == ok and len(ok) >= 2
    assert [r["dev_accuracy"] for r in ok] == sorted((r["dev_accuracy"] for r in ok),
                                                     reverse=True)
    for record in ok:
        results = _results(record)
        assert record["dev_accuracy"] == results["dev_accuracy"]
        assert record["epochs"] == results["epochs"] == 2
        # Each trial got its sampled width, once per sampled layer.
        values = record["values"]
        assert _flag(record, "hidden_units") == ",".join([str(values["units"])] * values["layers"])
        assert float(_flag(record, "learning_rate")) == values["learning_rate"]
        # One attempt, on this session's node.
        [attempt] = record["attempts"]
        assert attempt == {"node_id": record["node_id"], "first_epoch": 1}
    assert reports[-1][3]["dev_accuracy"] == ok[0]["dev_accuracy"]


def test_the_second_round_zooms_in_on_the_first_rounds_best(search):
    tmp_path, config, records, *_ = search
    state = json.loads((tmp_path / "search" / "search.json").read_text())
    # Round 1's α range is the log10 span of round 0's best ceil(top_fraction × successes)
    # trials, padded by padding × round 0's width (6 decades) each side, clipped to [-2, 4].
    ok0 = [r for r in records if r["round"] == 0 and r["status"] == "ok"]  # best first
    top = ok0[:math.ceil(config.top_fraction * len(ok0))]
    r_top = np.log10([r["values"]["learning_rate"] for r in top])
    round1 = state["rounds"][1]["space"]
    np.testing.assert_allclose(np.log10([round1["learning_rate"]["low"],
                                         round1["learning_rate"]["high"]]),
                               [max(-2, r_top.min() - 0.7), min(5, r_top.max() + 0.7)],
                               atol=1e-12)
    # Choices keep the values the best trials used.
    assert round1["dataset"]["values"] == ["moons"]
    for trial in state["rounds"][1]["trials"]:
        assert (round1["learning_rate"]["low"] <= trial["values"]["learning_rate"]
                <= round1["learning_rate"]["high"])


def test_the_tables_and_the_best_flagfile(search):
    tmp_path, config, records, *_ = search
    search_dir = tmp_path / "search"
    table = json.loads((search_dir / "results.json").read_text())
    assert table == records
    with open(search_dir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["trial"] for row in rows] == [r["trial"] for r in records]
    assert [row["status"] for row in rows] == [r["status"] for r in records]
    assert float(rows[0]["dev_accuracy"]) == records[0]["dev_accuracy"]
    assert rows[0]["node_id"] == records[0]["node_id"] and rows[0]["attempts"] == "1"
    # The best flagfile: the best trial's flags.txt without the flags set per trial.
    best = records[0]
    lines = [line for line in (search_dir / "best_flags.txt").read_text().splitlines()
             if not line.startswith("#")]
    with open(f"{best['model_dir']}/flags.txt") as f:
        trial_lines = f.read().splitlines()
    per_trial = re.compile(rf"^--(no)?({'|'.join(tuning.PER_TRIAL)})(=|$)")
    assert lines == [line for line in trial_lines if not per_trial.match(line)]
    assert len(trial_lines) - len(lines) == len(tuning.PER_TRIAL) - 1  # export_name is unset
    # (train.py --flagfile= reproducing it bit for bit: tests/test_tune_script.py)


def test_every_trial_is_on_the_hparams_dashboard(search):
    import tensorflow as tf
    from tensorboard.plugins.hparams import metadata

    tmp_path, config, records, *_ = search
    search_dir = tmp_path / "search"
    [experiment] = [metadata.parse_experiment_plugin_data(v.metadata.plugin_data.content)
                    for tag, v in _summaries(search_dir) if tag == "_hparams_/experiment"]
    assert [h.name for h in experiment.hparam_infos] == ["learning_rate", "hidden_units",
                                                         "dataset"]
    for record in records:
        if record["values"]["dataset"] == "no_such_set":
            continue  # refused before it wrote anything
        # Each trial is one session of the experiment, logged with its sampled values ...
        [session] = [metadata.parse_session_start_info_plugin_data(v.metadata.plugin_data.content)
                     for tag, v in _summaries(search_dir / record["trial"])
                     if tag == "_hparams_/session_start_info"]
        assert session.hparams["learning_rate"].number_value == record["values"]["learning_rate"]
        values = record["values"]
        assert session.hparams["hidden_units"].string_value == ",".join(
            [str(values["units"])] * values["layers"])
        if record["status"] != "ok":
            continue
        # ... and the dashboard's dev metric is the one the table ranks by.
        dev_accuracy = [float(tf.make_ndarray(v.tensor))
                        for tag, v in _summaries(search_dir / record["trial"] / "dev")
                        if tag == "epoch_accuracy"]
        assert dev_accuracy[-1] == pytest.approx(record["dev_accuracy"], abs=1e-6)


def _summaries(directory):
    """(tag, value proto) of every summary in the events files directly inside ``directory``."""
    import tensorflow as tf

    for path in sorted(directory.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                yield value.tag, value


def test_another_search_in_the_same_directory_is_refused_before_any_trial(search):
    tmp_path, *_ = search
    with pytest.raises(ValueError, match=re.escape(
            "search_dir must be a new directory or one holding the same search (it differs in "
            "seed)")):
        tuning.run_search(SPACE, _config(tmp_path, seed=4))


def test_asha_stops_the_trials_below_the_cutoff_at_its_rungs(ray_local, tmp_path):
    # gd with non-finite steps skipped, α over [1e-2, 1e4]: a large α leaves the dev accuracy
    # near chance. ASHA with grace 1 and η = 2 over 3 epochs has rungs at epochs 1 and 2. One
    # trial at a time, so trials reach the rungs in their order (seed 34: α = 0.011, 1710, 0.29,
    # 81): the expected decisions are replayed below from each trial's own dev accuracies.
    space = ss.SearchSpace((ss.LogUniform("learning_rate", 1e-2, 1e4),))
    base = TrainConfig(optimizer="gd", epochs=3, on_nonfinite="skip_step", deterministic=True)
    config = tuning.SearchConfig(str(tmp_path / "search"), base_config=base, rounds=1,
                                 trials_per_round=4, seed=34, scheduler="asha",
                                 asha_grace_period=1, asha_reduction_factor=2.0)
    records = tuning.run_search(space, config, trials.ClusterConfig(max_concurrent_trials=1))
    recorded = {1: [], 2: []}  # ASHA's rungs: the values recorded there so far
    for record in sorted(records, key=lambda r: r["trial"]):
        accuracy = _dev_accuracy_by_epoch(tmp_path / "search" / record["trial"])
        stopped_at = None
        for rung, values in recorded.items():
            # A trial below the median (the 1 - 1/η quantile) of those before it stops there.
            cutoff = np.percentile(values, 50) if values else None
            values.append(accuracy[rung])
            if cutoff is not None and accuracy[rung] < cutoff:
                stopped_at = rung
                break
        if stopped_at:
            assert (record["status"], record["epochs"]) == ("stopped", stopped_at), record
            # (the events hold float32: dev accuracies are multiples of 1/200 apart)
            assert record["dev_accuracy"] == pytest.approx(accuracy[stopped_at], abs=1e-7)
            assert not (tmp_path / "search" / record["trial"] / "results.json").exists()
        else:
            assert (record["status"], record["epochs"]) == ("ok", 3), record
    statuses = {r["values"]["learning_rate"] > 1: r["status"] for r in records}
    assert statuses == {True: "stopped", False: "ok"}  # the two poor trials, and only they
    assert sum(r["epochs"] for r in records) < 4 * 3  # fewer trial-epochs than the full search


def _dev_accuracy_by_epoch(run_dir):
    """{epoch: dev accuracy} from the run's TensorBoard events (13 steps an epoch)."""
    import tensorflow as tf

    return {value_step // 13: float(tf.make_ndarray(value.tensor))
            for value_step, value in _step_summaries(run_dir / "dev", "epoch_accuracy")}


def _step_summaries(directory, tag):
    import tensorflow as tf

    for path in sorted(directory.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == tag:
                    yield event.step, value


def test_trials_the_configuration_refuses_fail_without_running_and_keep_the_space(ray_local,
                                                                                   tmp_path):
    # keep_prob needs one value or one per hidden layer: "0.5,0.5,0.5" fits no 64-32 network,
    # so config.validate refuses every trial before it reaches Ray; a round with no success
    # leaves the next one the whole space.
    space = ss.SearchSpace((ss.LogUniform("learning_rate", 1e-2, 1.0),
                            ss.Choice("keep_prob", ("0.5,0.5,0.5",))))
    records = tuning.run_search(space, _config(tmp_path, trials_per_round=2))
    assert [r["status"] for r in records] == ["failed"] * 4
    for record in records:
        assert "attempts" not in record  # never started
        assert record["error"] == (
            "ValueError: keep_prob must be one value or one per hidden layer (2, from "
            "hidden_units=64,32). Received: keep_prob='0.5,0.5,0.5'")
    state = json.loads((tmp_path / "search" / "search.json").read_text())
    assert state["rounds"][1]["space"] == state["rounds"][0]["space"]
    assert not (tmp_path / "search" / "best_flags.txt").exists()


def test_trial_config_puts_the_sampled_values_in_place():
    config = tuning.trial_config({"learning_rate": 0.1 + 0.2, "deterministic": True, "epochs": 5,
                                  "keep_prob": "0.8,0.9", "beta": 0.9},
                                 TrainConfig(epochs=2), "runs/t0")
    assert (config.learning_rate, config.deterministic, config.epochs, config.keep_prob,
            config.beta) == (0.30000000000000004, True, 5, (0.8, 0.9), 0.9)
    # The run goes to its directory (absolute: a Ray worker's working directory is not the
    # driver's), resumes there, exports nothing, never reads test.
    assert (config.model_dir, config.export, config.evaluate_test, config.resume,
            config.overwrite) == (os.path.abspath("runs/t0"), False, False, True, False)


@pytest.mark.parametrize("values, hidden_units", [
    ({"units": 8, "layers": 3}, (8, 8, 8)), ({"hidden_units": "16,8"}, (16, 8)),
    ({"hidden_units": 8}, (8,)), ({"keep_prob": 1}, None),
], ids=["depth", "string_units", "int_units", "int_keep_prob"])
def test_trial_config_composes_and_parses_tuple_fields(values, hidden_units):
    config = tuning.trial_config(values, TrainConfig(), "/runs/t0")
    if hidden_units:
        assert config.hidden_units == hidden_units
    else:
        assert config.keep_prob == (1.0,)


@pytest.mark.parametrize("parameters, base_config, message", [
    ((ss.IntUniform("layers", 1, 3),), None,
     "search space must be given units and layers together (they compose hidden_units). "
     "Received: search space=['layers']"),
    ((ss.IntUniform("units", 4, 8), ss.IntUniform("layers", 1, 3),
      ss.Choice("hidden_units", ("8",))), None,
     "search space must be free of hidden_units when it has units and layers (they compose "
     "it). Received: search space=['units', 'layers', 'hidden_units']"),
    ((ss.IntUniform("units", 4, 8), ss.IntUniform("layers", 1, 3)),
     TrainConfig(hidden_units=(16, 8)),
     "base_config.hidden_units must be left at its default when the space has units and layers "
     "(they compose it). Received: base_config.hidden_units=(16, 8)"),
    ((ss.LogUniform("units", 4, 64), ss.IntUniform("layers", 1, 3)), None,
     "units.scale must be int or choice. Received: units.scale='log'"),
    ((ss.Choice("units", ("8", "16")), ss.IntUniform("layers", 1, 3)), None,
     "units must be sampled from integers >= 1. "
     "Received: units={'scale': 'choice', 'values': ['8', '16']}"),
    ((ss.IntUniform("units", 4, 8), ss.IntUniform("layers", 0, 3)), None,
     "layers must be sampled from integers >= 1. "
     "Received: layers={'scale': 'int', 'low': 0, 'high': 3}"),
    ((ss.Choice("no_such_flag", (1,)), ss.Choice("export", (True,))), None,
     "search space must be made of training flags other than model_dir, export_dir, "
     "export_name, export, evaluate_test, resume, overwrite, or units and layers. "
     "Received: search space=['no_such_flag', 'export']"),
    ((ss.LogUniform("batch_size", 16, 128),), None,
     "batch_size.scale must be an int range or a choice of integers for a int training flag. "
     "Received: batch_size.scale='log'"),
    ((ss.Choice("deterministic", ("yes",)),), None,
     "deterministic must be sampled as bool values for its training flag. "
     "Received: deterministic='yes'"),
    ((ss.IntUniform("optimizer", 1, 2),), None,
     "optimizer.scale must be a choice for a str training flag. Received: optimizer.scale='int'"),
    ((ss.Choice("hidden_units", ("8,a",)),), None,
     "hidden_units must be comma-separated ints for its training flag. "
     "Received: hidden_units='8,a'"),
], ids=["layers_alone", "with_hidden_units", "with_fixed_hidden_units", "log_units",
        "string_units", "zero_layers", "unknown_and_per_trial", "log_int_field", "string_bool", "int_str_field", "bad_tuple"])
def test_bad_spaces_are_named(parameters, base_config, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        tuning.check_space(ss.SearchSpace(parameters), base_config)


@pytest.mark.parametrize("overrides, message", [
    ({"rounds": 0}, "rounds must be an integer >= 1. Received: rounds=0"),
    ({"trials_per_round": 2.0}, "trials_per_round must be an integer >= 1. Received: trials_per_round=2.0"),
    ({"metric": "test_accuracy"},
     "metric must be one of dev_accuracy, best_dev_accuracy, dev_loss. Received: metric='test_accuracy'"),
    ({"top_fraction": 0.0}, "top_fraction must be in (0, 1]. Received: top_fraction=0.0"),
    ({"padding": -1.0}, "padding must be >= 0. Received: padding=-1.0"),
    ({"scheduler": "hyperband"}, "scheduler must be one of none, asha. Received: scheduler='hyperband'"),
    ({"asha_reduction_factor": 1.0}, "asha_reduction_factor must be > 1. Received: asha_reduction_factor=1.0"),
    ({"base_config": TrainConfig(learning_rate=0.0)},
     "learning_rate must be > 0. Received: learning_rate=0.0"),
])
def test_bad_config_is_named(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _config(tmp_path, **overrides)


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
