"""The gradient checker against ``tf.test.compute_gradient``, and its directional check at scale.

Every contender checks the same float64 cost J(θ) of the same tanh MLP (He initialisation, L2 on
the kernels, softmax cross-entropy from logits) on one batch, in one process, in alternating
rounds (``benchmarks.harness``):

- **full check**: a whole ``tfnet.gradcheck.check_gradients(mode="full")`` call, its float64
  twin and tracing included;
- **its perturbed evaluations alone**: the 2N evaluations J(θ ± h e_i) of a full check
  (``evaluator.Evaluator.components``, traced beforehand), the part of its time that grows with N:
  no cut of fixed cost (twin, tracing, J and its gradient, the report) can take the check below
  it;
- **compute_gradient, tf.function**: ``tf.test.compute_gradient`` given J of the flattened θ
  wrapped in ``tf.function`` (its fastest use), and **compute_gradient, eager**, the plain
  Python function (its usual use; slow: ``include_eager``).

Goals (issue "The gradient checker beyond every anchor"): the full check ≥ 20× faster than
``compute_gradient`` given a ``tf.function``; the directional check of a 1,000,000-parameter MLP
under 5 s (a speed-up ≥ 1 against a 5 s deadline).
"""

import dataclasses

import numpy as np

from benchmarks import harness
from tfnet.config import positive_int, positive_ints, setting


@dataclasses.dataclass(frozen=True)
class GradcheckBenchConfig:
    """What to time; each field is a flag of ``scripts/bench_gradcheck.py``."""

    small_layers: tuple = setting((50, 80, 30, 10), "Layer sizes of the ~7,000-parameter MLP.",
                                  positive_ints)
    large_layers: tuple = setting((784, 1024, 192, 10),
                                  "Layer sizes of the ~1,000,000-parameter MLP.", positive_ints)
    batch: int = setting(16, "Examples in the batch J is computed on.", positive_int)
    rounds: int = setting(3, "Timed rounds.", positive_int)
    num_directions: int = setting(4, "Random directions per variable in the directional check.",
                                  positive_int)
    include_eager: bool = setting(True, "Also time compute_gradient on a plain Python function "
                                  "(its usual use; about a minute a round here).")


# A run small enough for a test: every check on tiny MLPs, one round, no eager anchor.
QUICK = dict(small_layers=(3, 4, 2), large_layers=(3, 5, 2), batch=4, rounds=1,
             include_eager=False)


L2 = 1e-3


def mlp(layer_sizes, seed):
    """A tanh MLP `layer_sizes[0] -> ... -> layer_sizes[-1]` with He initialisation and L2."""
    import keras

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
    import keras

    model = mlp(layer_sizes, seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, layer_sizes[0])).astype("float32")
    y = rng.integers(0, layer_sizes[-1], batch)
    return model, x, y, keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _flat_cost(model, x, y, loss):
    """(J(θ) of the flattened float64 θ, θ at the model's weights) for tf.test.compute_gradient."""
    import tensorflow as tf

    from tfnet.gradcheck import twin as twin_lib

    twin = twin_lib.float_twin(model, "float64")
    cost = twin_lib.model_cost(twin, x, y, loss, "float64")
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    sizes = [int(np.prod(s)) for s in shapes]
    state = [v.value for v in twin.non_trainable_variables]

    def flat_cost(theta):
        values = [tf.reshape(t, s) for t, s in zip(tf.split(theta, sizes), shapes)]
        return cost(values, state)[0][0]

    theta = np.concatenate([v.numpy().astype(np.float64).ravel() for v in model.trainable_variables])
    return flat_cost, theta


def _evaluations_only(model, x, y, loss):
    """A function evaluating J(θ ± h e_i) for every component i, as a full check does, traced
    before it is returned."""
    import tensorflow as tf

    from tfnet.gradcheck import engine, evaluator
    from tfnet.gradcheck import twin as twin_lib
    from tfnet.gradcheck.options import CheckOptions

    twin = twin_lib.float_twin(model, "float64")
    cost = twin_lib.model_cost(twin, x, y, loss, "float64")
    state = [v.value for v in twin.non_trainable_variables]
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    evaluations = evaluator.Evaluator(lambda values: cost(values, state)[0], shapes, tf.float64)
    theta0 = np.concatenate(
        [v.numpy().astype(np.float64).ravel() for v in model.trainable_variables]
    )
    theta = tf.constant(theta0)
    h_plus, h_minus = engine.steps(theta0, CheckOptions(dtype="float64").epsilon, np.float64)
    index = np.arange(theta0.size)
    batch_size = engine.default_batch_size(theta0.size + 1, tf.float64)  # as the check's, M = 1

    def evaluate():
        return evaluations.components(
            "value", theta, np.concatenate([index, index]), np.concatenate([h_plus, -h_minus]),
            batch_size, set(),
        )

    evaluate()
    return evaluate


def _contenders(config):
    import tensorflow as tf

    from tfnet import gradcheck
    from tfnet.gradcheck.options import CheckOptions

    model, x, y, loss = _problem(list(config.small_layers), config.batch, seed=0)
    flat_cost, theta = _flat_cost(model, x, y, loss)
    compiled_cost = tf.function(flat_cost)
    evaluations_only = _evaluations_only(model, x, y, loss)
    epsilon = CheckOptions(dtype="float64").epsilon

    def compute_gradient(fn):
        return lambda: harness.timed(
            lambda: tf.test.compute_gradient(fn, [tf.constant(theta)], delta=epsilon), 1)

    contenders = [
        harness.Contender("full check", lambda: harness.timed(
            lambda: gradcheck.check_gradients(model, x, y, loss), 1)),
        harness.Contender("its perturbed evaluations alone",
                          lambda: harness.timed(evaluations_only, 1)),
        harness.Contender("compute_gradient, tf.function", compute_gradient(compiled_cost)),
    ]
    if config.include_eager:
        contenders.append(harness.Contender("compute_gradient, eager", compute_gradient(flat_cost)))
    return contenders, theta.size


def run(config, say=print):
    """Times the full check against compute_gradient, then the directional check at scale."""
    contenders, parameters = _contenders(config)
    benchmark = f"full check, {parameters:,} parameters, float64"
    say(f"{benchmark}: {config.rounds} rounds ...")
    timings = harness.measure(contenders, config.rounds)
    results = [harness.result(benchmark, timings, "full check", "compute_gradient, tf.function",
                              "check", 20.0),
               harness.result(benchmark, timings, "its perturbed evaluations alone",
                              "compute_gradient, tf.function", "check")]
    if config.include_eager:
        results.append(harness.result(benchmark, timings, "full check",
                                      "compute_gradient, eager", "check"))
    from tfnet import gradcheck

    model, x, y, loss = _problem(list(config.large_layers), config.batch, seed=0)
    large = f"directional check, {model.count_params():,} parameters, float64"
    say(f"{large}: {config.rounds} rounds ...")
    directional = harness.Contender("directional check", lambda: harness.timed(
        lambda: gradcheck.check_gradients(model, x, y, loss, mode="directional",
                                          num_directions=config.num_directions), 1))
    deadline = harness.Contender("5 s", lambda: 5.0)
    timings = harness.measure([directional, deadline], config.rounds)
    results.append(harness.result(large, timings, "directional check", "5 s", "check", 1.0))
    return results
