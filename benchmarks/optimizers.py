"""Per-step time of tfnet's optimisers against their Keras twins, in the real training step.

Each pair trains two copies of one MLP (same initial weights, same data) with the training step
and loop of ``tfnet.training`` (``make_train_step`` in a ``TrainLoop``), compiled with XLA or not;
only the optimiser differs. Rounds alternate the two, and the result is ours' median speed-up
over the twin (goal: at most 5 % slower, a speed-up ≥ 1/1.05).
"""

import dataclasses

import numpy as np

from benchmarks import harness
from tfnet import optimizers as optimizers_lib
from tfnet.config import names_among, positive_int, positive_ints, setting

# Each of ours beside its Keras twin (the optimiser records'), with the default hyperparameters.
PAIRS = optimizers_lib.TWINS
GOAL = 1 / 1.05


@dataclasses.dataclass(frozen=True)
class OptimizersBenchConfig:
    """What to time; each field is a flag of ``scripts/bench_optimizers.py``."""

    optimizers: tuple = setting(tuple(PAIRS), "Which of ours to time, each against its Keras twin.",
                                names_among(*PAIRS))
    jit_compile: tuple = setting(("off", "on"), "Loops to time: off (tf.function), on (XLA).",
                                 names_among("off", "on"))
    hidden_units: tuple = setting((512, 512), "The MLP's hidden layers (64 inputs, 10 classes).",
                           positive_ints)
    batch_size: int = setting(64, "Examples per step.", positive_int)
    rounds: int = setting(30, "Timed rounds per pair and loop.", positive_int)
    steps_per_round: int = setting(50, "Steps per contender per round.", positive_int)


# A run small enough for a test: one pair, a tiny MLP, without XLA, three steps a round.
QUICK = dict(optimizers=("gd",), jit_compile=("off",), hidden_units=(8,), batch_size=8, rounds=1,
             steps_per_round=3)


def _contender(name, config, jit_compile, examples, mean, variance):
    import tensorflow as tf

    from tfnet import model as model_lib
    from tfnet.training import step as step_lib
    from tfnet.training.batches import MemoryBatches
    from tfnet.training.loop import TrainLoop

    model = model_lib.build_model((64,), 10, tuple(config.hidden_units), mean, variance, seed=0)
    optimizer = optimizers_lib.get(name, 1e-3)
    optimizer.build(model.trainable_variables)
    loop = TrainLoop(step_lib.make_train_step(model, optimizer),
                     MemoryBatches(examples, 0, config.batch_size), seed=0, position=tf.Variable(0, dtype=tf.int64), jit_compile=jit_compile)
    steps = config.steps_per_round
    loop(steps)  # trace and compile
    return harness.Contender(name, lambda: harness.timed(lambda: loop(steps), steps))


def run(config, say=print):
    """Times every pair in every loop; returns ours' ``harness.Result`` against each twin."""
    import tensorflow as tf

    from tfnet import data as data_lib

    rng = np.random.default_rng(0)
    m = 16 * config.batch_size
    examples = data_lib.Examples(tf.constant(rng.standard_normal((m, 64)).astype(np.float32)),
                                 tf.constant(rng.integers(0, 10, m)))
    mean, variance = np.zeros(64, np.float32), np.ones(64, np.float32)
    results = []
    for mode in config.jit_compile:
        for ours in config.optimizers:
            twin = PAIRS[ours]
            say(f"{ours} vs {twin}, jit_compile={mode} ...")
            contenders = [_contender(name, config, mode == "on", examples, mean, variance)
                          for name in (ours, twin)]
            timings = harness.measure(contenders, config.rounds)
            benchmark = (f"MLP 64-{'-'.join(map(str, config.hidden_units))}-10, "
                         f"b={config.batch_size}, jit_compile={mode}")
            results.append(harness.result(benchmark, timings, ours, twin, "step", GOAL))
    return results
