"""Per-step time of tfnet's optimisers against their Keras twins on the same MLP.

Each pair trains two copies of one MLP (same weights, same fixed mini-batch) with a tf.function
train step, compiled with XLA or not. Rounds alternate the two (and which goes first), so slow
phases of a shared machine hit both alike; the result is the median over rounds of the ratio
of their times (ours / Keras).
"""

import dataclasses
import time

import numpy as np
import tensorflow as tf

import keras
from tfnet import optimizers

# Each of ours beside its Keras twin, with the registry's default hyperparameters.
PAIRS = (("gd", "keras_sgd"), ("momentum", "keras_momentum"), ("rmsprop", "keras_rmsprop"),
         ("adam", "keras_adam"))


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What to time.

    Args:
      pairs: (ours, Keras) registry names. Defaults to ``PAIRS``.
      jit_compile: the modes to time. Default (False, True).
      input_dim, hidden_units, num_classes: the MLP. Defaults 64, (512, 512), 10.
      batch_size: examples per step. Default 64.
      rounds: alternations per pair and mode. Default 30.
      steps_per_round: steps timed per contender per round. Default 20.
      warmup_steps: untimed steps first (tracing, XLA compilation). Default 10.
      learning_rate: α of every optimiser. Default 1e-3.
    """

    pairs: tuple = PAIRS
    jit_compile: tuple = (False, True)
    input_dim: int = 64
    hidden_units: tuple = (512, 512)
    num_classes: int = 10
    batch_size: int = 64
    rounds: int = 30
    steps_per_round: int = 20
    warmup_steps: int = 10
    learning_rate: float = 1e-3


@dataclasses.dataclass
class PairResult:
    ours: str
    keras: str
    jit_compile: bool
    ours_ms: float  # median ms per step
    keras_ms: float
    ratio: float  # median over rounds of ours / Keras


def _mlp(config):
    seeded = keras.initializers.GlorotUniform(seed=0)
    layers = [keras.Input((config.input_dim,))]
    layers += [keras.layers.Dense(u, activation="relu", kernel_initializer=seeded) for u in config.hidden_units]
    layers += [keras.layers.Dense(config.num_classes, kernel_initializer=seeded)]
    return keras.Sequential(layers)


def _train_step(name, config, jit_compile):
    net = _mlp(config)
    optimizer = optimizers.get(name, config.learning_rate)
    optimizer.build(net.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(jit_compile=jit_compile)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, net(x, training=True))
        optimizer.apply(tape.gradient(loss, net.trainable_variables), net.trainable_variables)
        return loss

    return step


def _time(step, x, y, steps):
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(x, y)
    loss.numpy()  # waits for the last step
    return (time.perf_counter() - start) / steps


def benchmark(config):
    """Times every pair in every mode; returns a ``PairResult`` each."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(config.batch_size, config.input_dim)).astype(np.float32))
    y = tf.constant(rng.integers(0, config.num_classes, config.batch_size))
    results = []
    for jit_compile in config.jit_compile:
        for ours, theirs in config.pairs:
            steps = {name: _train_step(name, config, jit_compile) for name in (ours, theirs)}
            for step in steps.values():
                _time(step, x, y, config.warmup_steps)
            times = {ours: [], theirs: []}
            for round_index in range(config.rounds):
                order = (ours, theirs) if round_index % 2 == 0 else (theirs, ours)
                for name in order:
                    times[name].append(_time(steps[name], x, y, config.steps_per_round))
            ratios = np.array(times[ours]) / np.array(times[theirs])
            results.append(PairResult(ours, theirs, jit_compile, 1000 * float(np.median(times[ours])),
                                      1000 * float(np.median(times[theirs])), float(np.median(ratios))))
    return results


def format_table(results):
    lines = ["| ours | Keras | jit_compile | ours ms/step | Keras ms/step | median ratio ours/Keras |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r.ours} | {r.keras} | {r.jit_compile} | {r.ours_ms:.3f} | {r.keras_ms:.3f} | {r.ratio:.3f} |"
              for r in results]
    return "\n".join(lines)
