"""Forward+backward time of tfnet's ``BatchNorm`` against ``keras.layers.BatchNormalization``.

Each configuration (activation shape × training/inference × tf.function/XLA) compiles one step
per contender: the layer's output, then the gradient of ``sum(y · upstream)`` with respect to the
input, γ and β (in training the step also updates the running averages). The two alternate in
rounds; the result is ours' median speed-up over Keras (goal: at most 10 % slower).
"""

import dataclasses

from benchmarks import harness
from tfnet.config import names_among, positive_int, setting

SHAPES = {"dense": (256, 1024), "image": (64, 32, 32, 64)}
GOAL = 1 / 1.10


@dataclasses.dataclass(frozen=True)
class BatchNormBenchConfig:
    """What to time; each field is a flag of ``scripts/bench_batch_norm.py``."""

    shapes: tuple = setting(tuple(SHAPES), "Activations: dense (256x1024), image (64x32x32x64 NHWC).",
                            names_among(*SHAPES))
    jit_compile: tuple = setting(("off", "on"), "Steps to time: off (tf.function), on (XLA).",
                                 names_among("off", "on"))
    rounds: int = setting(15, "Timed rounds per configuration.", positive_int)
    iterations: int = setting(5, "Calls per contender per round.", positive_int)


# A run small enough for a test: both contenders, the dense shape, without XLA, a call a round.
QUICK = dict(shapes=("dense",), jit_compile=("off",), rounds=1, iterations=1)


def _contender(name, layer, shape, training, jit_compile, x, upstream, iterations):
    import tensorflow as tf

    layer.build(shape)

    @tf.function(jit_compile=jit_compile)
    def step(x, upstream):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=training) * upstream)
        return tape.gradient(loss, [x, layer.gamma, layer.beta])

    def run():
        return harness.timed(lambda: [step(x, upstream) for _ in range(iterations)][-1][0].numpy(),
                             iterations)

    return harness.Contender(name, run)


def run(config, say=print):
    """Times every configuration; returns ours' ``harness.Result`` against Keras for each."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tfnet.layers import BatchNorm

    rng = np.random.default_rng(0)
    results = []
    for shape_name in config.shapes:
        shape = SHAPES[shape_name]
        x = tf.constant(rng.standard_normal(shape).astype("float32") * 3.0 + 5.0)
        upstream = tf.constant(rng.standard_normal(shape).astype("float32"))
        for training in (True, False):
            for mode in config.jit_compile:
                benchmark = (f"{shape_name} {'×'.join(map(str, shape))}, "
                             f"{'training' if training else 'inference'}, jit_compile={mode}")
                say(f"{benchmark} ...")
                contenders = [
                    _contender(name, layer, shape, training, mode == "on", x, upstream,
                               config.iterations)
                    for name, layer in (("BatchNorm", BatchNorm()),
                                        ("Keras BatchNormalization", keras.layers.BatchNormalization()))
                ]
                timings = harness.measure(contenders, config.rounds, warmup_rounds=2)
                results.append(harness.result(benchmark, timings, "BatchNorm",
                                              "Keras BatchNormalization", "call", GOAL))
    return results
