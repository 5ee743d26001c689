"""Smoke tests of the two benchmarks (tfnet.optimizers.benchmark, tfnet.layers.benchmark): one
or a few rounds on tiny shapes, checking what they return and print and that the contenders
alternate which goes first, never the timings themselves."""

import numpy as np
import pytest

from tfnet.layers import BatchNorm
from tfnet.layers import benchmark as layers_benchmark
from tfnet.optimizers import benchmark as optimizers_benchmark

TINY_SHAPES = {"dense": (8, 4), "image": (2, 3, 3, 4)}


@pytest.fixture
def tiny_shapes(monkeypatch):
    for name, shape in TINY_SHAPES.items():
        monkeypatch.setitem(layers_benchmark.SHAPES, name, shape)


def test_batch_norm_benchmark_rows_and_table(tiny_shapes):
    config = layers_benchmark.BenchmarkConfig(rounds=1, iterations=1, warmup=1)
    rows = layers_benchmark.benchmark(config)
    assert [(r["shape"], r["mode"], r["compile"]) for r in rows] == [
        (shape, mode, compile)
        for shape in ("dense", "image")
        for mode in ("training", "inference")
        for compile in ("tf.function", "xla")
    ]
    for r in rows:
        assert r["ours_s"] > 0 and r["keras_s"] > 0
        assert r["ratio"] == pytest.approx(r["ours_s"] / r["keras_s"])  # one round: its ratio
    table = layers_benchmark.format_table(rows).splitlines()
    assert table[0].startswith("| activation | mode | compile |") and len(table) == 2 + len(rows)
    assert table[2].startswith("| dense 8×4 | training | tf.function |")
    assert table[-1].startswith("| image 2×3×3×4 | inference | xla |")


def _recording_order(monkeypatch, module, contender_of):
    """Replaces ``module._time`` by a stand-in that records which contender each timed call is
    for (``contender_of(step)``) and returns 1 s for ours and 2 s for Keras'."""
    order = []

    def fake_time(step, *args):
        order.append(contender_of(step))
        return 1.0 if order[-1] == "ours" else 2.0

    monkeypatch.setattr(module, "_time", fake_time)
    return order


def test_batch_norm_benchmark_alternates_which_contender_goes_first(tiny_shapes, monkeypatch):
    original = layers_benchmark._step

    def tagged_step(layer, training, jit_compile):
        step = original(layer, training, jit_compile)
        tagged = lambda x, upstream: step(x, upstream)  # noqa: E731 (a taggable callable)
        tagged.contender = "ours" if isinstance(layer, BatchNorm) else "keras"
        return tagged

    monkeypatch.setattr(layers_benchmark, "_step", tagged_step)
    order = _recording_order(monkeypatch, layers_benchmark, lambda step: step.contender)
    config = layers_benchmark.BenchmarkConfig(shapes=("dense",), rounds=4, iterations=1, warmup=0,
                                              jit_compile=(False,))
    rows = layers_benchmark.benchmark(config)
    per_mode = [order[i:i + 8] for i in range(0, len(order), 8)]  # training, then inference
    assert len(per_mode) == 2
    for calls in per_mode:
        rounds = [tuple(calls[i:i + 2]) for i in range(0, 8, 2)]
        assert rounds == [("ours", "keras"), ("keras", "ours")] * 2
    assert [r["ratio"] for r in rows] == [0.5, 0.5]  # ours / Keras of the same round


def test_optimizer_benchmark_results_and_table():
    config = optimizers_benchmark.BenchConfig(
        pairs=(("gd", "keras_sgd"), ("adam", "keras_adam")), input_dim=4, hidden_units=(8,),
        num_classes=3, batch_size=8, rounds=1, steps_per_round=1, warmup_steps=1,
    )
    results = optimizers_benchmark.benchmark(config)
    assert [(r.ours, r.keras, r.jit_compile) for r in results] == [
        ("gd", "keras_sgd", False), ("adam", "keras_adam", False),
        ("gd", "keras_sgd", True), ("adam", "keras_adam", True),
    ]
    for r in results:
        assert r.ours_ms > 0 and r.keras_ms > 0 and np.isfinite(r.ratio)
        assert r.ratio == pytest.approx(r.ours_ms / r.keras_ms)  # one round: its ratio
    table = optimizers_benchmark.format_table(results).splitlines()
    assert table[0].startswith("| ours | Keras | jit_compile |") and len(table) == 2 + len(results)
    assert table[2].startswith("| gd | keras_sgd | False |")
    assert table[-1].startswith("| adam | keras_adam | True |")


def test_optimizer_benchmark_alternates_which_contender_goes_first(monkeypatch):
    original = optimizers_benchmark._train_step

    def tagged_step(name, config, jit_compile):
        step = original(name, config, jit_compile)
        tagged = lambda x, y: step(x, y)  # noqa: E731 (a taggable callable)
        tagged.contender = "keras" if name.startswith("keras_") else "ours"
        return tagged

    monkeypatch.setattr(optimizers_benchmark, "_train_step", tagged_step)
    order = _recording_order(monkeypatch, optimizers_benchmark, lambda step: step.contender)
    config = optimizers_benchmark.BenchConfig(
        pairs=(("gd", "keras_sgd"),), jit_compile=(False,), input_dim=4, hidden_units=(8,),
        num_classes=3, batch_size=8, rounds=4, steps_per_round=1, warmup_steps=1,
    )
    (result,) = optimizers_benchmark.benchmark(config)
    timed = order[2:]  # after one warm-up call per contender
    assert [tuple(timed[i:i + 2]) for i in range(0, 8, 2)] == [("ours", "keras"), ("keras", "ours")] * 2
    assert result.ratio == 0.5
