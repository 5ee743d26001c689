"""The benchmark harness and each benchmark on a tiny problem: what they time (the project's real
loop, never a copy), how they alternate and summarise, never the timings themselves."""

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import harness, input as input_benchmark, optimizers as optimizers_benchmark
from benchmarks import training as training_benchmark
from tfnet import model as model_lib
from tfnet import optimizers
from tfnet.training import loop as loop_lib


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
    assert harness.exit_status(results) == 1 and harness.exit_status(results[::2]) == 0


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


def test_the_numpy_contender_computes_the_course_adam_step_as_tfnet_does():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3)).astype(np.float32)
    y = rng.integers(0, 2, 16)
    mlp = training_benchmark.NumpyMLP([3, 4, 2], batch_size=16, learning_rate=0.1)
    model = model_lib.build_model((3,), 2, (4,), np.zeros(3), np.ones(3))
    model.set_weights([mlp.weights[0], mlp.biases[0], mlp.weights[1], mlp.biases[1]])
    optimizer = optimizers.get("adam", 0.1)
    for _ in range(3):
        with tf.GradientTape() as tape:
            cost = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x)))
        optimizer.apply(tape.gradient(cost, model.trainable_variables), model.trainable_variables)
        mlp.step(x, y)
    expected = [mlp.weights[0], mlp.biases[0], mlp.weights[1], mlp.biases[1]]
    for a, b in zip(model.get_weights(), expected, strict=True):
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


def test_the_training_benchmark_times_a_trainers_loop(loop_calls):
    config = training_benchmark.TrainingBenchConfig(problems=("course",), rounds=1,
                                                    seconds_per_round=0.01)
    results = training_benchmark.run(config, say=lambda text: None)
    assert [(r.contender, r.anchor) for r in results] == [
        ("tfnet", "Keras fit, steps_per_execution 1"), ("tfnet", "Keras fit, steps_per_execution 100"),
        ("tfnet", "Keras fit, best steps_per_execution"), ("tfnet", "numpy"),
        ("tfnet", "its matmuls alone"), ("tfnet", "matmul peak"),
        ("its matmuls alone", "matmul peak")]
    assert all(r.speedup > 0 for r in results)
    assert results[3].goal == 3.0 and results[0].goal is None
    assert loop_calls  # the real loop ran


def test_the_optimizer_benchmark_times_the_real_loop_per_pair(loop_calls):
    config = optimizers_benchmark.OptimizersBenchConfig(
        optimizers=("gd",), jit_compile=("off",), hidden_units=(8,), batch_size=8, rounds=2,
        steps_per_round=3)
    (result,) = optimizers_benchmark.run(config, say=lambda text: None)
    assert (result.contender, result.anchor, result.unit) == ("gd", "keras_sgd", "step")
    assert result.goal == pytest.approx(1 / 1.05)
    assert loop_calls == [3] * 2 + [3] * 2 * 3  # compile call each, then warm-up and 2 rounds


def test_the_input_benchmark_times_the_loop_with_and_without_its_training_step(loop_calls, monkeypatch):
    real = input_benchmark.synthetic_images
    monkeypatch.setattr(input_benchmark, "synthetic_images",
                        lambda: real(num_examples=96, shape=(8, 8, 3)))
    config = input_benchmark.InputBenchConfig(datasets=("synthetic_cifar",), hidden_units=(4,),
                                              batch_size=32, rounds=1)
    results = input_benchmark.run(config, say=lambda text: None)
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
    config = gradcheck_benchmark.GradcheckBenchConfig(
        small_layers=(3, 4, 2), large_layers=(3, 5, 2), batch=4, rounds=1, include_eager=False)
    results = gradcheck_benchmark.run(config, say=lambda text: None)
    assert [(r.contender, r.anchor, r.goal) for r in results] == [
        ("full check", "compute_gradient, tf.function", 20.0),
        ("its perturbed evaluations alone", "compute_gradient, tf.function", None),
        ("directional check", "5 s", 1.0)]
    assert checks == ["full", "full", "directional", "directional"]  # warm-up and a round each
