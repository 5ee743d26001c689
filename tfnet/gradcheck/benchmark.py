"""Timings of the gradient checker against tf.test.compute_gradient (scripts/bench_gradcheck.py).

Both contenders check the same float64 cost J(θ) of the same tanh MLP (He initialisation, L2 on
the kernels, softmax cross-entropy from logits) on one batch, in one process, alternating, and the
median time of each is reported. tf.test.compute_gradient is given J as a function of the
flattened θ, both as an eager Python function (its usual use) and wrapped in tf.function (its
fastest use); our time is a whole `check_gradients(mode="full")` call, twin building and tracing
included. Beside it, `ours_evaluations_only` times the 2N perturbed evaluations of J alone
(`perturb.Evaluator.components`, traced beforehand), the part of our time that grows with N: no
fixed cost (twin, tracing, graph optimisation, J and its gradient, the report) could bring the
whole check below it.
"""

import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from tfnet import gradcheck
from tfnet.gradcheck import numerics, perturb
from tfnet.gradcheck import twin as twin_lib

L2 = 1e-3


def mlp(layer_sizes, seed):
    """A tanh MLP `layer_sizes[0] -> ... -> layer_sizes[-1]` with He initialisation and L2."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((layer_sizes[0],))]
    for units in layer_sizes[1:-1]:
        layers.append(
            keras.layers.Dense(
                units,
                activation="tanh",
                kernel_initializer="he_normal",
                kernel_regularizer=keras.regularizers.L2(L2),
            )
        )
    layers.append(keras.layers.Dense(layer_sizes[-1], kernel_regularizer=keras.regularizers.L2(L2)))
    return keras.Sequential(layers)


def _problem(layer_sizes, batch, seed):
    model = mlp(layer_sizes, seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, layer_sizes[0])).astype("float32")
    y = rng.integers(0, layer_sizes[-1], batch)
    return model, x, y, keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _flat_cost(model, x, y, loss):
    """(J(θ) of the flattened float64 θ, θ at the model's weights) for tf.test.compute_gradient."""
    twin = twin_lib.float_twin(model, "float64")
    cost = twin_lib.model_cost(twin, x, y, loss, "float64")
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    sizes = [int(np.prod(s)) for s in shapes]
    state = [v.value for v in twin.non_trainable_variables]

    def flat_cost(theta):
        values = [tf.reshape(t, s) for t, s in zip(tf.split(theta, sizes), shapes)]
        return cost(values, state)[0]

    theta = np.concatenate([v.numpy().astype(np.float64).ravel() for v in model.trainable_variables])
    return flat_cost, theta


def _evaluations_only(model, x, y, loss):
    """A function evaluating J(θ ± h e_i) for every component i, as a full check does, traced
    before it is returned."""
    twin = twin_lib.float_twin(model, "float64")
    cost = twin_lib.model_cost(twin, x, y, loss, "float64")
    state = [v.value for v in twin.non_trainable_variables]
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    evaluator = perturb.Evaluator(lambda values: tf.reshape(cost(values, state)[0], [1]), shapes,
                                  tf.float64)
    theta0 = np.concatenate(
        [v.numpy().astype(np.float64).ravel() for v in model.trainable_variables]
    )
    theta = tf.constant(theta0)
    h_plus, h_minus = numerics.steps(theta0, numerics.default_epsilon("float64"), np.float64)
    index = np.arange(theta0.size)
    batch_size = numerics.default_batch_size(theta0.size, tf.float64)

    def evaluate():
        return evaluator.components(
            "value", theta, np.concatenate([index, index]), np.concatenate([h_plus, -h_minus]),
            batch_size, set(),
        )

    evaluate()
    return evaluate


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def full_check_against_compute_gradient(layer_sizes, batch, repeats, seed=0):
    """Median seconds of our full check and of tf.test.compute_gradient (eager and compiled).

    Returns a dict with the parameter count, the lists of times (ours, ours_evaluations_only,
    compute_gradient_eager, compute_gradient_tf_function), their medians, the ratios of medians
    (ratio_eager, ratio_tf_function, and ratio_tf_function_bound: compute_gradient's compiled
    time over our evaluations alone, the most any cut of fixed cost could reach), our relative
    difference, and the relative difference between compute_gradient's numerical and
    theoretical Jacobians (the same comparison made by hand).
    """
    model, x, y, loss = _problem(layer_sizes, batch, seed)
    flat_cost, theta = _flat_cost(model, x, y, loss)
    compiled_cost = tf.function(flat_cost)
    evaluations_only = _evaluations_only(model, x, y, loss)
    epsilon = numerics.default_epsilon("float64")
    times = {
        "ours": [], "ours_evaluations_only": [], "compute_gradient_eager": [],
        "compute_gradient_tf_function": [],
    }
    for _ in range(repeats):
        seconds, report = _timed(lambda: gradcheck.check_gradients(model, x, y, loss))
        times["ours"].append(seconds)
        times["ours_evaluations_only"].append(_timed(evaluations_only)[0])
        for name, fn in (
            ("compute_gradient_eager", flat_cost),
            ("compute_gradient_tf_function", compiled_cost),
        ):
            seconds, (theoretical, numerical) = _timed(
                lambda: tf.test.compute_gradient(fn, [tf.constant(theta)], delta=epsilon)
            )
            times[name].append(seconds)
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {
        "parameters": int(theta.size),
        "times": times,
        "medians": medians,
        "ratio_eager": medians["compute_gradient_eager"] / medians["ours"],
        "ratio_tf_function": medians["compute_gradient_tf_function"] / medians["ours"],
        "ratio_tf_function_bound": (
            medians["compute_gradient_tf_function"] / medians["ours_evaluations_only"]
        ),
        "relative_difference": report.relative_difference,
        "compute_gradient_relative_difference": float(
            np.linalg.norm(numerical[0] - theoretical[0])
            / (np.linalg.norm(numerical[0]) + np.linalg.norm(theoretical[0]))
        ),
    }


def directional_check(layer_sizes, batch, num_directions, repeats, seed=0):
    """Median seconds of a whole directional check (twin and tracing included)."""
    model, x, y, loss = _problem(layer_sizes, batch, seed)
    times, report = [], None
    for _ in range(repeats):
        seconds, report = _timed(
            lambda: gradcheck.check_gradients(
                model, x, y, loss, mode="directional", num_directions=num_directions
            )
        )
        times.append(seconds)
    return {
        "parameters": model.count_params(),
        "times": times,
        "median": statistics.median(times),
        "evaluations": report.evaluations,
        "relative_difference": report.relative_difference,
        "verdict": report.verdict,
    }
