"""Forward+backward time of `BatchNorm` against `keras.layers.BatchNormalization`.

Each configuration (activation shape × training/inference × tf.function/XLA) compiles one step
per contender: the layer's output, then the gradient of `sum(y * upstream)` with respect to the
input, γ and β (in training the step also updates the running averages). The contenders run
alternately in one process, `iterations` calls per turn, for `rounds` rounds, ours first in
even rounds and Keras first in odd ones; the ratio reported is the median over rounds of (our
time / Keras' time) in the same round, so slow drifts of a shared machine cancel.
"""

import dataclasses
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from tfnet.layers.batch_norm import BatchNorm

SHAPES = {"dense": (256, 1024), "image": (64, 32, 32, 64)}


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """What to time.

    Args:
        shapes: names of `SHAPES` to time (default both: Dense 256×1024, NHWC 64×32×32×64).
        rounds: alternating turns per configuration (default 15); the median is over these.
        iterations: calls per contender per turn (default 5).
        warmup: untimed calls per contender before timing, after compilation (default 3).
        jit_compile: tf.function variants, False (graph) and/or True (XLA) (default both).
    """

    shapes: tuple = ("dense", "image")
    rounds: int = 15
    iterations: int = 5
    warmup: int = 3
    jit_compile: tuple = (False, True)


def _step(layer, training, jit_compile):
    @tf.function(jit_compile=jit_compile)
    def step(x, upstream):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(y * upstream)
        return tape.gradient(loss, [x, layer.gamma, layer.beta])

    return step


def _time(step, x, upstream, iterations):
    start = time.perf_counter()
    for _ in range(iterations):
        gradients = step(x, upstream)
    gradients[0].numpy()  # waits for the device
    return (time.perf_counter() - start) / iterations


def benchmark(config):
    """Times every configuration; returns one dict per configuration (seconds per call)."""
    rows = []
    rng = np.random.default_rng(0)
    for shape_name in config.shapes:
        shape = SHAPES[shape_name]
        x = tf.constant(rng.standard_normal(shape).astype("float32") * 3.0 + 5.0)
        upstream = tf.constant(rng.standard_normal(shape).astype("float32"))
        for training in (True, False):
            for jit_compile in config.jit_compile:
                contenders = {
                    "ours": BatchNorm(),
                    "keras": keras.layers.BatchNormalization(),
                }
                steps = {}
                for name, layer in contenders.items():
                    layer.build(shape)
                    steps[name] = _step(layer, training, jit_compile)
                    for _ in range(config.warmup):
                        steps[name](x, upstream)
                times = {name: [] for name in steps}
                for round_index in range(config.rounds):
                    # Which contender goes first alternates, so a slow phase that always hit the
                    # first (or second) turn of a round cannot favour one of them.
                    order = ("ours", "keras") if round_index % 2 == 0 else ("keras", "ours")
                    for name in order:
                        times[name].append(_time(steps[name], x, upstream, config.iterations))
                ratios = [o / k for o, k in zip(times["ours"], times["keras"])]
                rows.append({
                    "shape": shape_name,
                    "mode": "training" if training else "inference",
                    "compile": "xla" if jit_compile else "tf.function",
                    "ours_s": statistics.median(times["ours"]),
                    "keras_s": statistics.median(times["keras"]),
                    "ratio": statistics.median(ratios),
                })
    return rows


def format_table(rows):
    """The rows as a markdown table, times in milliseconds."""
    lines = [
        "| activation | mode | compile | ours (ms) | Keras (ms) | median ratio ours/Keras |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        shape = "×".join(map(str, SHAPES[r["shape"]]))
        lines.append(
            f"| {r['shape']} {shape} | {r['mode']} | {r['compile']} | {1e3 * r['ours_s']:.3f} "
            f"| {1e3 * r['keras_s']:.3f} | {r['ratio']:.3f} |"
        )
    return "\n".join(lines)
