"""The benchmark harness and each benchmark in its --quick mode: what they time (the project's
real loop, never a copy), how they alternate, summarise and exit, never the timings themselves."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import harness, input as input_benchmark, jax_mlp, suite
from benchmarks import runs as runs_benchmark
from benchmarks import training as training_benchmark
from helpers import REPO_ROOT, script_env
from tfnet import model as model_lib
from tfnet import optimizers
from tfnet.training import loop as loop_lib

SHARED_TFDS = os.path.join(os.path.dirname(REPO_ROOT), "shared", "tfds")
# The mnist_t10k data where it is prepared; the benchmarks skip what needs it elsewhere.
DATA_DIR = SHARED_TFDS if os.path.isdir(os.path.join(SHARED_TFDS, "mnist_t10k")) else None


def quick_config(name):
    """The config of benchmark ``name`` in --quick mode, as scripts/bench_all.py makes it."""
    return suite.config_for(suite.BENCHMARKS[name], quick=True, data_dir=DATA_DIR)


def _scripted(name, seconds, calls):
    """A contender that records its calls and returns the next of ``seconds``."""
    values = iter(seconds)

    def run():
        calls.append(name)
        return next(values)

    return harness.Contender(name, run)


def test_rounds_alternate_the_order_after_untimed_warm_up_rounds():
    calls = []
    contenders = [_scripted("a", [9, 1, 1, 1, 1], calls), _scripted("b", [9, 2, 2, 2, 2], calls),
                  _scripted("c", [9, 4, 4, 4, 4], calls)]
    timings = harness.measure(contenders, rounds=4, warmup_rounds=1)
    assert calls == ["a", "b", "c"] + ["a", "b", "c", "c", "b", "a"] * 2
    assert timings == {"a": [1, 1, 1, 1], "b": [2, 2, 2, 2], "c": [4, 4, 4, 4]}


def test_speed_up_is_the_median_of_per_round_ratios_not_a_ratio_of_medians():
    timings = {"ours": [1.0, 2.0, 3.0], "anchor": [3.0, 1.0, 6.0]}
    # Per round 3, 0.5, 2: median 2; the ratio of the medians would be 3 / 2 = 1.5.
    result = harness.result("tiny", timings, "ours", "anchor", "step", goal=2.0)
    assert result.speedup == 2.0 and result.seconds == 2.0 and result.met
    assert not harness.result("tiny", timings, "ours", "anchor", "step", goal=2.5).met


def test_markdown_has_a_row_per_result_and_marks_missed_goals():
    results = [harness.Result("p", "tfnet", "numpy", 2e-6, "example", 3.5, 3.0),
               harness.Result("p", "tfnet", "Keras", 2e-6, "example", 2.0, 3.0),
               harness.Result("p", "tfnet", "peak", 2e-6, "example", 0.4)]
    lines = harness.markdown(results).splitlines()
    assert len(lines) == 2 + 3
    assert lines[2] == "| p | tfnet | numpy | 2 µs / example | 500,000 | 3.5 | ≥ 3 | yes |"
    assert lines[3].endswith("| 2 | ≥ 3 | **no** |") and lines[4].endswith("| 0.4 |  |  |")
    assert harness.exit_status(results) == harness.GOAL_MISSED == 2
    assert harness.exit_status(results[::2]) == 0


@pytest.mark.parametrize("per_second, shown", [
    (140842.4, "140,842"), (100.0, "100"), (12.46, "12.5"), (0.1309, "0.131")])
def test_rates_keep_three_significant_digits_below_a_hundred(per_second, shown):
    assert harness.format_rate(per_second) == shown


@pytest.mark.parametrize("argv, rounds, shapes", [
    (["--quick", "--rounds=4"], 4, ("dense",)),  # a flag given keeps its value
    (["--quick"], 1, ("dense",)),
    (["--rounds=4"], 4, ("dense", "image")),  # without --quick, the defaults
])
def test_quick_sets_the_flags_not_given(argv, rounds, shapes):
    from absl import flags

    from benchmarks import batch_norm
    from tfnet import flags as tfnet_flags

    flag_values = flags.FlagValues()
    tfnet_flags.define_config_flags(batch_norm.BatchNormBenchConfig, flag_values)
    harness.define_quick_flag(flag_values)
    flag_values(["bench_batch_norm.py", *argv])
    config = harness.config_from_flags(batch_norm.BatchNormBenchConfig, batch_norm.QUICK,
                                       flag_values)
    assert (config.rounds, config.shapes) == (rounds, shapes)


@pytest.mark.parametrize("seconds, shown", [
    (1.72e-5, "17.2 µs"), (4.08e-7, "0.408 µs"), (9.996e-4, "1 ms"), (1.34e-3, "1.34 ms"),
    (0.99996, "1 s"), (2.1, "2.1 s"),
])
def test_times_read_in_the_unit_that_fits_after_rounding(seconds, shown):
    assert harness.format_seconds(seconds) == shown


@pytest.mark.parametrize("arguments, message", [
    (dict(rounds=0), "rounds must be >= 1. Received: rounds=0"),
    (dict(rounds=1, warmup_rounds=-1), "warmup_rounds must be >= 0. Received: warmup_rounds=-1"),
])
def test_measure_refuses_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        harness.measure([harness.Contender("a", lambda: 1.0)], **arguments)


def test_flops_per_example_of_an_mlp_by_hand():
    # 2-5-2-2: products 10, 10, 4. Forward and weight gradients 2·2·24 = 96; input gradients of
    # the second and third layers 2·14 = 28.
    assert training_benchmark.flops_per_example([2, 5, 2, 2]) == 124


def _tfnet_adam_steps(weights, mean, variance, x, y, batches, learning_rate):
    """tfnet's model (given weights, zero biases) trained by tfnet's Adam on ``batches`` (index
    arrays into x, y): the cost of each step before its update, and the final weights."""
    sizes = [w.shape[0] for w in weights] + [weights[-1].shape[1]]
    model = model_lib.build_model((sizes[0],), sizes[-1], tuple(sizes[1:-1]), mean, variance)
    model.set_weights([v for w in weights for v in (w, np.zeros(w.shape[1]))])
    optimizer = optimizers.get("adam", learning_rate)
    costs = []
    for batch in batches:
        with tf.GradientTape() as tape:
            cost = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                y[batch], model(x[batch])))
        optimizer.apply(tape.gradient(cost, model.trainable_variables), model.trainable_variables)
        costs.append(float(cost))
    return costs, model.get_weights()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_numpy_contender_computes_the_course_adam_step_as_tfnet_does(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3)).astype(np.float32)
    y = rng.integers(0, 2, 16)
    mlp = training_benchmark.NumpyMLP([3, 4, 2], batch_size=16, learning_rate=0.1, dtype=dtype)
    assert all(w.dtype == dtype for w in mlp.weights + mlp.biases)
    initial = [w.astype(np.float32) for w in mlp.weights]
    numpy_costs = [mlp.step(x.astype(dtype), y) for _ in range(3)]
    tfnet_costs, tfnet_weights = _tfnet_adam_steps(initial, np.zeros(3), np.ones(3), x, y,
                                                   [np.arange(16)] * 3, 0.1)
    np.testing.assert_allclose(numpy_costs, tfnet_costs, rtol=1e-5)
    expected = [mlp.weights[0], mlp.biases[0], mlp.weights[1], mlp.biases[1]]
    for a, b in zip(tfnet_weights, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(mlp.predict(x), np.argmax(_logits(mlp, x), axis=1))


def _logits(mlp, x):
    hidden = np.maximum(x @ mlp.weights[0] + mlp.biases[0], 0.0)
    return hidden @ mlp.weights[1] + mlp.biases[1]


@pytest.mark.skipif(not jax_mlp.available(), reason="the bench extra (jax, optax) is not installed")
def test_the_jax_contender_trains_as_tfnet_does_from_the_same_start():
    # 20 examples at b = 8: two full mini-batches in the scan, then the smaller last one.
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((20, 3)) * 3.0 + 1.0).astype(np.float32)
    y = rng.integers(0, 2, 20)
    mean, variance = x.mean(axis=0), x.var(axis=0)
    mlp = jax_mlp.JaxMLP(x, y, [3, 4, 2], mean, variance, batch_size=8, learning_rate=0.1, seed=0)
    # Its initial weights ("he": randn · √(2/n_in)) and its first epoch's order, drawn as it does.
    draws = np.random.default_rng(0)
    initial = [(draws.standard_normal((n, k)) * np.sqrt(2.0 / n)).astype(np.float32)
               for n, k in ((3, 4), (4, 2))]
    order = draws.permutation(20)
    jax_costs = np.asarray(mlp.epoch())
    tfnet_costs, tfnet_weights = _tfnet_adam_steps(
        initial, mean, variance, x, y, [order[0:8], order[8:16], order[16:20]], 0.1)
    np.testing.assert_allclose(jax_costs, tfnet_costs, rtol=1e-5)
    jax_weights = [np.asarray(v) for layer in mlp.params for v in layer]
    for a, b in zip(tfnet_weights, jax_weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.fixture
def loop_calls(monkeypatch):
    """Counts the calls of the real ``TrainLoop`` (which still runs)."""
    calls = []
    real_call = loop_lib.TrainLoop.__call__

    def counted(self, num_steps):
        calls.append(num_steps)
        return real_call(self, num_steps)

    monkeypatch.setattr(loop_lib.TrainLoop, "__call__", counted)
    return calls


def test_the_training_benchmark_times_a_trainers_loop_against_keras_jax_and_numpy(
        loop_calls, monkeypatch):
    import keras

    compiled = []
    real_compile = keras.Model.compile

    def recorded(self, *args, **kwargs):
        compiled.append((kwargs["steps_per_execution"], kwargs["jit_compile"]))
        return real_compile(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "compile", recorded)
    results = training_benchmark.run(quick_config("training"), say=lambda text: None)
    keras_names = [training_benchmark.keras_name(*setting) for setting in compiled]
    jax = [training_benchmark.JAX] if jax_mlp.available() else []
    best = training_benchmark.KERAS_BEST
    assert [(r.contender, r.anchor) for r in results] == [
        *[("tfnet, jit_compile=on", anchor) for anchor in [
            *keras_names, best, *jax, "numpy", "its matmuls alone", "matmul peak"]],
        *[("tfnet, jit_compile=off", anchor) for anchor in [best, *jax]],
        ("its matmuls alone", "matmul peak")]
    # Keras' jit_compile="auto" is off without a GPU: XLA is asked for explicitly.
    assert compiled == [(1, False), (100, False), (100, True)]
    assert all(r.speedup > 0 for r in results)
    assert [r.goal for r in results if r.goal] == [3.0]  # the course net against numpy
    assert loop_calls and all(n % 5 == 0 for n in loop_calls)  # whole epochs of ⌈300 / 64⌉ steps


def test_the_jax_contender_is_skipped_with_one_line_when_jax_is_missing(monkeypatch):
    lines = []
    config = training_benchmark.TrainingBenchConfig()
    assert training_benchmark._jax_available(config, lines.append) == jax_mlp.available()
    lines.clear()
    monkeypatch.setattr(jax_mlp, "available", lambda: False)
    assert not training_benchmark._jax_available(config, lines.append)
    assert lines == ["skipped the JAX + Optax contender: JAX or Optax is not installed "
                     "(pip install -e .[bench])"]


def test_the_optimizer_benchmark_times_the_real_loop_per_pair(loop_calls):
    from benchmarks import optimizers as optimizers_benchmark

    (result,) = optimizers_benchmark.run(quick_config("optimizers"), say=lambda text: None)
    assert (result.contender, result.anchor, result.unit) == ("gd", "keras_sgd", "step")
    assert result.goal == pytest.approx(1 / 1.05)
    assert loop_calls == [3] * 2 + [3] * 2 * 2  # compile call each, then warm-up and a round


def test_the_batch_norm_benchmark_times_ours_against_keras_in_training_and_inference():
    from benchmarks import batch_norm as batch_norm_benchmark

    results = batch_norm_benchmark.run(quick_config("batch_norm"), say=lambda text: None)
    assert [(r.benchmark, r.contender, r.anchor) for r in results] == [
        (f"dense 256×1024, {mode}, jit_compile=off", "BatchNorm", "Keras BatchNormalization")
        for mode in ("training", "inference")]
    assert all(r.goal == pytest.approx(1 / 1.10) for r in results)


def test_the_input_benchmark_times_the_loop_with_and_without_its_training_step(loop_calls):
    results = input_benchmark.run(quick_config("input"), say=lambda text: None)
    assert [(r.contender, r.anchor) for r in results] == [("input work alone", "training loop")] * 2
    assert "flip,crop,brightness,contrast" in results[1].benchmark and results[0].goal == 5.0
    assert set(loop_calls) == {3}  # whole epochs of 96 / 32 steps


def test_the_input_work_alone_reads_the_batch_and_trains_nothing():
    features = tf.ones([4, 2])
    cost, applied = input_benchmark._reads_the_batch(lambda replica, replicas: (features, tf.constant([1, 2, 3, 4])))
    assert float(cost) == 8.0 + 10.0 and bool(applied)


def test_the_gradcheck_benchmark_times_the_real_check_against_compute_gradient(monkeypatch):
    from benchmarks import gradcheck as gradcheck_benchmark
    from tfnet import gradcheck

    checks = []
    real_check = gradcheck.check_gradients

    def counted(*args, **kwargs):
        checks.append(kwargs.get("mode", "full"))
        return real_check(*args, **kwargs)

    monkeypatch.setattr(gradcheck, "check_gradients", counted)
    results = gradcheck_benchmark.run(quick_config("gradcheck"), say=lambda text: None)
    assert [(r.contender, r.anchor, r.goal) for r in results] == [
        ("full check", "compute_gradient, tf.function", 20.0),
        ("its perturbed evaluations alone", "compute_gradient, tf.function", None),
        ("directional check", "5 s", 1.0)]
    assert checks == ["full", "full", "directional", "directional"]  # warm-up and a round each


def test_the_whole_run_benchmark_times_processes_and_a_course_run_in_quick_mode(monkeypatch):
    started, trained = [], []
    real_run, real_train = subprocess.run, runs_benchmark.tfnet_course_run

    def recorded_run(command, **kwargs):
        started.append(command[1:])
        return real_run(command, **kwargs)

    def recorded_train(config, epochs, model_dir):
        trained.append(epochs)
        return real_train(config, epochs, model_dir)

    monkeypatch.setattr(subprocess, "run", recorded_run)
    monkeypatch.setattr(runs_benchmark, "tfnet_course_run", recorded_train)
    results = runs_benchmark.run(quick_config("runs"), say=lambda text: None)
    mnist = [(runs_benchmark.TFNET_RUN, runs_benchmark.KERAS_VALIDATION, 2.0)] if DATA_DIR else []
    assert [(r.contender, r.anchor, r.goal) for r in results] == [
        (runs_benchmark.MAIN_JOB, "4 s", 1.0), *mnist,
        (runs_benchmark.TFNET_COURSE, runs_benchmark.NUMPY_COURSE, 3.0)]
    scripts = [command[0] for command in started]
    assert scripts == ["scripts/train.py"] + (["scripts/train.py", "-m"] if DATA_DIR else [])
    assert started[0][1].startswith("--model_dir=") and "tfnet-bench-" in started[0][1]
    assert started[0][-1] == "--epochs=1"  # the main job, shortened by --quick
    assert trained == [4, 2]  # the long and the short course run of the one round


def test_a_failing_process_crashes_the_benchmark_with_its_error_output():
    with pytest.raises(subprocess.CalledProcessError) as raised:
        runs_benchmark.run_process(["-c", "import sys; sys.exit('planted failure')"])
    assert "planted failure" in raised.value.stderr


def test_the_whole_run_benchmark_refuses_a_short_run_as_long_as_the_long_one_before_any_work():
    config = runs_benchmark.RunsBenchConfig(course_epochs=100, course_short_epochs=100)
    with pytest.raises(ValueError, match=r"course_epochs must be > course_short_epochs \(100\). "
                                         r"Received: course_epochs=100"):
        runs_benchmark.run(config, say=pytest.fail)


def test_the_numpy_course_run_records_its_cost_as_the_course_does_and_learns_the_moons():
    from tfnet import data as data_lib

    splits = data_lib.load("moons", num_examples=375)
    train, test = ((e.features.numpy().astype(np.float64), e.labels.numpy()) for e in (
        data_lib.in_memory(splits.train), data_lib.in_memory(splits.test)))
    costs, train_accuracy, test_accuracy = runs_benchmark.numpy_course_run(
        [2, 5, 2, 2], train, test, epochs=250, record_every=100, learning_rate=0.01)
    assert len(costs) == 3 and costs[0] > costs[-1]  # epochs 0, 100, 200
    assert train_accuracy > 0.8 and test_accuracy > 0.8


def test_every_benchmark_script_is_in_the_suite_with_quick_settings_of_its_own_flags():
    import dataclasses

    scripts = sorted(f for f in os.listdir(os.path.join(REPO_ROOT, "scripts"))
                     if f.startswith("bench_") and f != "bench_all.py")
    assert sorted(b.script for b in suite.BENCHMARKS.values()) == scripts
    for benchmark in suite.BENCHMARKS.values():
        module, config_class = benchmark.load()
        assert set(module.QUICK) <= {f.name for f in dataclasses.fields(config_class)}


def test_the_page_says_how_the_figures_were_taken_then_the_goals_then_each_table():
    sections = [suite.Section("training", "Training throughput.", "python scripts/bench_training.py", [
        harness.Result("p", "tfnet", "numpy", 2e-6, "example", 3.5, 3.0),
        harness.Result("p", "tfnet", "peak", 2e-6, "example", 0.4)]),
        suite.Section("runs", "Whole runs.", "python scripts/bench_runs.py", [
            harness.Result("q", "main job", "4 s", 5.0, "run", 0.8, 1.0)])]
    where = dict(cpu="cpu", cores="2", load="3.00, 2.00, 1.00", python="3.11", versions="tf")
    text = suite.page(sections, "python scripts/bench_all.py", "2026-12-04", where,
                      dict(where, load="4.00, 3.00, 2.00"), quick=True)
    assert "3.00, 2.00, 1.00 before the run and 4.00, 3.00, 2.00 after it" in text
    assert "**--quick**" in text and "1 of 2 met" in text
    goals = text.split("## Goals")[1].split("## training")[0]
    assert "| p | tfnet | numpy |" in goals and "| q | main job | 4 s |" in goals
    assert "| p | tfnet | peak |" not in goals  # no goal, only in its section
    assert text.index("## training") < text.index("| p | tfnet | peak |") < text.index("## runs")


def test_a_crashing_contender_propagates_out_of_a_real_benchmark(monkeypatch):
    real_call = loop_lib.TrainLoop.__call__
    calls = []

    def crash_in_the_warm_up_round(self, num_steps):
        calls.append(num_steps)
        if len(calls) == 3:  # after each contender's compiling call
            raise RuntimeError("planted crash")
        return real_call(self, num_steps)

    monkeypatch.setattr(loop_lib.TrainLoop, "__call__", crash_in_the_warm_up_round)
    with pytest.raises(RuntimeError, match="planted crash"):
        suite.run_all(["optimizers"], quick=True, say=lambda text: None)


# A benchmark script of one contender against an anchor taking 2 s a step: --outcome chooses
# whether the contender meets its goal, misses it or crashes.
_FAKE_BENCHMARK = """
import dataclasses
from benchmarks import harness
from tfnet import flags as tfnet_flags
from tfnet.config import setting

@dataclasses.dataclass(frozen=True)
class Config:
    outcome: str = setting("met", "met, missed or crash")

def run(config):
    def ours():
        if config.outcome == "crash":
            raise RuntimeError("planted crash")
        return 1.0
    timings = harness.measure([harness.Contender("ours", ours),
                               harness.Contender("anchor", lambda: 2.0)], rounds=1)
    goal = 3.0 if config.outcome == "missed" else 1.5
    return [harness.result("fake", timings, "ours", "anchor", "step", goal)]

tfnet_flags.define_config_flags(Config)
harness.define_quick_flag()
tfnet_flags.run(harness.script_main(run, Config, {}))
"""


@pytest.mark.parametrize("outcome, status", [("met", 0), ("missed", 2), ("crash", 1)])
def test_a_benchmark_script_exits_2_on_a_missed_goal_and_1_on_a_crash(outcome, status):
    completed = subprocess.run([sys.executable, "-c", _FAKE_BENCHMARK, f"--outcome={outcome}"],
                               cwd=REPO_ROOT, env=script_env(), capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == status, completed.stderr
    assert ("planted crash" in completed.stderr) == (outcome == "crash")
    assert ("| fake | ours | anchor |" in completed.stdout) == (outcome != "crash")


def test_bench_all_writes_the_page_of_a_quick_run_and_exits_with_the_goals_status(tmp_path):
    page = tmp_path / "benchmarks.md"
    completed = subprocess.run(
        [sys.executable, "scripts/bench_all.py", "--quick", "--benchmarks=optimizers,batch_norm",
         f"--write={page}"], cwd=REPO_ROOT, env=script_env(), capture_output=True, text=True,
        timeout=300)
    text = page.read_text()
    missed = "**no**" in text.split("## Goals")[1].split("## optimizers")[0]
    assert completed.returncode == (2 if missed else 0), completed.stderr
    assert text.index("## optimizers") < text.index("## batch_norm")
    assert "python scripts/bench_optimizers.py --quick" in text
    assert "--benchmarks=optimizers,batch_norm" in text.splitlines()[2]


def test_the_readme_block_gets_every_goal_and_nothing_else_changes():
    sections = [suite.Section("training", "Training throughput.", "python scripts/bench_training.py", [
        harness.Result("p", "tfnet", "numpy", 2e-6, "example", 3.5, 3.0),
        harness.Result("p", "tfnet", "peak", 2e-6, "example", 0.4)]),
        suite.Section("your_data", "Your data.", "python scripts/bench_your_data.py", [
            harness.Figure("m", "peak", 1600.0, "MB", 1500.0, True)])]
    where = dict(cpu="cpu", cores="2", load="1.00, 1.00, 1.00", python="3.11", versions="tf")
    text = "intro\n<!-- benchmark-goals -->\nold rows\n<!-- /benchmark-goals -->\nend\n"
    updated = suite.with_goals(text, sections, "2026-12-04", where)
    assert updated.startswith("intro\n<!-- benchmark-goals -->\n1 of 2 goals met on 2026-12-04")
    assert updated.endswith("<!-- /benchmark-goals -->\nend\n") and "old rows" not in updated
    assert "| p | tfnet | numpy |" in updated and "| m | peak | 1,600 MB | ≤ 1500 MB | **no** |" in updated
    assert "| p | tfnet | peak |" not in updated  # no goal
    with pytest.raises(ValueError, match="benchmark-goals"):
        suite.with_goals("no block", sections, "2026-12-04", where)
