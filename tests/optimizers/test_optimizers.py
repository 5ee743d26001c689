"""tfnet's optimisers against the course's equations, Keras' twins and test problems.

Expected numbers come from (a) independent float64 numpy implementations of the equations in
docs/methods.md §7, written literally (v_hat, s_hat formed element-wise) below; (b) Keras' built-ins
where docs/methods.md §7 says the two are the same update; (c) closed-form minima (J(w) = (w − 5)²,
quadratics, Rosenbrock's (1, 1)).
"""

import numpy as np
import pytest
import tensorflow as tf

import keras
from tfnet import optimizers
from tfnet.optimizers import Adam, GradientDescent, Momentum, RMSprop

STEPS = 200
# Each column has its own gradient scale, 1e-3 ... 1e3, so ε and the per-element scaling of
# RMSprop/Adam matter; entries are u × scale with u ~ uniform(−0.5, 1.5): mostly positive, so
# the parameters drift away from 0 and element-wise relative errors are well conditioned.
SCALES = np.array([1e-3, 1e-1, 1e1, 1e3])
GRADIENTS = np.random.default_rng(0).uniform(-0.5, 1.5, size=(STEPS, 3, 4)) * SCALES


# ---- independent float64 numpy references: the course's equations, literally --------------

def numpy_gd(gradients, alpha):
    w, path = np.zeros(gradients.shape[1:]), []
    for g in gradients:
        w = w - alpha * g
        path.append(w)
    return np.array(path)


def numpy_momentum(gradients, alpha, beta=0.9, bias_correction=False):
    w, v, path = np.zeros(gradients.shape[1:]), 0.0, []
    for t, g in enumerate(gradients, start=1):
        v = beta * v + (1 - beta) * g
        v_hat = v / (1 - beta**t) if bias_correction else v
        w = w - alpha * v_hat
        path.append(w)
    return np.array(path)


def numpy_rmsprop(gradients, alpha, beta2=0.9, epsilon=1e-8, epsilon_inside_sqrt=False):
    w, s, path = np.zeros(gradients.shape[1:]), 0.0, []
    for g in gradients:
        s = beta2 * s + (1 - beta2) * g**2
        denominator = np.sqrt(s + epsilon) if epsilon_inside_sqrt else np.sqrt(s) + epsilon
        w = w - alpha * g / denominator
        path.append(w)
    return np.array(path)


def numpy_adam(gradients, alpha, beta1=0.9, beta2=0.999, epsilon=1e-8, epsilon_hat=False):
    w, v, s, path = np.zeros(gradients.shape[1:]), 0.0, 0.0, []
    for t, g in enumerate(gradients, start=1):
        v = beta1 * v + (1 - beta1) * g
        s = beta2 * s + (1 - beta2) * g**2
        v_hat, s_hat = v / (1 - beta1**t), s / (1 - beta2**t)
        if epsilon_hat:  # Kingma & Ba, the form before §2.1: ε̂ added to the uncorrected √s.
            w = w - alpha * np.sqrt(1 - beta2**t) / (1 - beta1**t) * v / (np.sqrt(s) + epsilon)
        else:
            w = w - alpha * v_hat / (np.sqrt(s_hat) + epsilon)
        path.append(w)
    return np.array(path)


def run(optimizer, gradients=GRADIENTS, traced=True):
    """The parameter after each step of ``optimizer`` fed ``gradients``, from w = 0."""
    w = keras.Variable(np.zeros(gradients.shape[1:]), dtype=keras.config.floatx())
    # A traced step (as in training) is ~10x faster than eager updates over 200 steps; for a
    # dozen steps tracing costs more than it saves.
    def apply(g):
        optimizer.apply([g], [w])

    step = tf.function(apply) if traced else apply
    path = []
    for g in gradients:
        step(tf.constant(g, dtype=w.dtype))
        path.append(w.numpy())
    return np.array(path)


def relative_difference(a, b):
    """Largest element-wise |a − b| / |b| over a whole trajectory."""
    return float(np.max(np.abs(a - b) / np.abs(b)))


NUMPY_CASES = {
    "gd": (lambda: GradientDescent(0.01), lambda g: numpy_gd(g, 0.01)),
    "momentum": (lambda: Momentum(0.01, beta=0.9), lambda g: numpy_momentum(g, 0.01, 0.9)),
    "momentum_bias_correction": (
        lambda: Momentum(0.01, beta=0.8, bias_correction=True),
        lambda g: numpy_momentum(g, 0.01, 0.8, bias_correction=True),
    ),
    "rmsprop": (lambda: RMSprop(0.01, beta2=0.9, epsilon=1e-3), lambda g: numpy_rmsprop(g, 0.01, 0.9, 1e-3)),
    "rmsprop_epsilon_inside_sqrt": (
        lambda: RMSprop(0.01, beta2=0.95, epsilon=1e-6, epsilon_inside_sqrt=True),
        lambda g: numpy_rmsprop(g, 0.01, 0.95, 1e-6, epsilon_inside_sqrt=True),
    ),
    "adam": (lambda: Adam(0.01, epsilon=1e-3), lambda g: numpy_adam(g, 0.01, epsilon=1e-3)),
    "adam_default_epsilon": (lambda: Adam(0.01), lambda g: numpy_adam(g, 0.01)),
    "adam_epsilon_hat": (
        lambda: Adam(0.01, beta1=0.8, beta2=0.99, epsilon=1e-3, epsilon_hat=True),
        lambda g: numpy_adam(g, 0.01, 0.8, 0.99, 1e-3, epsilon_hat=True),
    ),
}


@pytest.mark.parametrize("case", NUMPY_CASES)
def test_matches_numpy_equations_for_200_mixed_scale_steps(case, float64):
    make_optimizer, reference = NUMPY_CASES[case]
    np.testing.assert_allclose(run(make_optimizer()), reference(GRADIENTS), rtol=1e-12, atol=0)


def test_setup_guard_the_numpy_cases_epsilon_is_large_enough_for_its_placement_to_matter():
    # Guards the cases above: with their ε the placement changes the result far beyond 1e-12.
    assert relative_difference(numpy_rmsprop(GRADIENTS, 0.01, 0.9, 1e-3, True),
                               numpy_rmsprop(GRADIENTS, 0.01, 0.9, 1e-3)) > 1e-3
    assert relative_difference(numpy_adam(GRADIENTS, 0.01, epsilon=1e-3, epsilon_hat=True),
                               numpy_adam(GRADIENTS, 0.01, epsilon=1e-3)) > 1e-3
    assert relative_difference(numpy_momentum(GRADIENTS, 0.01, 0.8, True),
                               numpy_momentum(GRADIENTS, 0.01, 0.8)) > 1e-3


# ---- Keras' twins: equal where docs/methods.md §7 says so ----------------------------------------

# Keras' SGD and Adam round their β through float32 even in float64 (ops.cast of a Python
# float), so the equality cases use β exactly representable in float32: 0.875 = 7/8 and
# 0.9990234375 = 1 − 2⁻¹⁰. The effect of that rounding at β = 0.9 is measured below.
BETA, BETA2 = 0.875, 1 - 2**-10

KERAS_EQUAL_CASES = {
    "gd": (lambda: GradientDescent(0.01), lambda: optimizers.get("keras_sgd", 0.01)),
    "momentum_lr_alpha_times_1_minus_beta": (
        lambda: Momentum(0.01, beta=BETA),
        lambda: optimizers.get("keras_momentum", 0.01, beta=BETA),
    ),
    "rmsprop_epsilon_inside_sqrt": (
        lambda: RMSprop(0.01, beta2=0.9, epsilon=1e-3, epsilon_inside_sqrt=True),
        lambda: optimizers.get("keras_rmsprop", 0.01, beta2=0.9, epsilon=1e-3),
    ),
    "adam_epsilon_hat": (
        lambda: Adam(0.01, beta1=BETA, beta2=BETA2, epsilon=1e-3, epsilon_hat=True),
        lambda: optimizers.get("keras_adam", 0.01, beta1=BETA, beta2=BETA2, epsilon=1e-3),
    ),
}


@pytest.mark.parametrize("case", KERAS_EQUAL_CASES)
def test_equals_keras_twin_in_float64(case, float64):
    ours, theirs = KERAS_EQUAL_CASES[case]
    np.testing.assert_allclose(run(ours()), run(theirs()), rtol=1e-12, atol=0)


# Base-class arguments act the same way on ours and on the twin. For momentum's weight decay the
# twin's lr is α(1 − β), not α, and Keras decays by w · weight_decay · lr: ours matches it with
# weight_decay scaled by (1 − β).
BASE_ARGUMENTS = {
    "clipnorm": {"clipnorm": 1.0},
    "global_clipnorm": {"global_clipnorm": 1.0},
    "clipvalue": {"clipvalue": 0.5},
    "weight_decay": {"weight_decay": 0.1},
    "use_ema": {"use_ema": True, "ema_momentum": 0.9, "ema_overwrite_frequency": 3},
    "gradient_accumulation_steps": {"gradient_accumulation_steps": 3},
    "loss_scale_factor": {"loss_scale_factor": 8.0},
}


@pytest.mark.parametrize("base", BASE_ARGUMENTS)
@pytest.mark.parametrize("twins", [("gd", "keras_sgd"), ("momentum", "keras_momentum"),
                                   ("rmsprop", "keras_rmsprop"), ("adam", "keras_adam")])
def test_base_class_arguments_act_as_on_keras_twin(twins, base, float64):
    shared = {"momentum": {"beta": BETA}, "adam": {"beta1": BETA, "beta2": BETA2}}.get(twins[0], {})
    own = {"rmsprop": {"epsilon_inside_sqrt": True}, "adam": {"epsilon_hat": True}}.get(twins[0], {})
    hyper = {**shared, **own}
    own_base = dict(BASE_ARGUMENTS[base])
    if twins[0] == "momentum" and base == "weight_decay":
        own_base["weight_decay"] *= 1 - BETA
    ours = optimizers.get(twins[0], 0.01, **hyper, **own_base)
    theirs = optimizers.get(twins[1], 0.01, **shared, **BASE_ARGUMENTS[base])
    gradients = GRADIENTS[:12]
    ours_path = run(ours, gradients, traced=False)
    np.testing.assert_allclose(ours_path, run(theirs, gradients, traced=False), rtol=1e-12, atol=0)
    # The argument really changed the update (a planted no-op would pass the line above).
    plain = optimizers.get(twins[0], 0.01, **hyper)
    assert not np.allclose(run(plain, gradients, traced=False), ours_path, rtol=1e-9, atol=0)


# Where the two are not the same update, the difference is measured (numbers in the README).
def divergence_cases():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=10, decay_rate=0.5)
    return {
        "momentum_bias_correction": (
            Momentum(0.01, beta=0.9, bias_correction=True), optimizers.get("keras_momentum", 0.01, beta=0.9)
        ),
        "momentum_decaying_alpha": (
            Momentum(schedule, beta=0.9), optimizers.get("keras_momentum", schedule, beta=0.9)
        ),
        "rmsprop_epsilon_outside_sqrt": (
            RMSprop(0.01, epsilon=1e-8), optimizers.get("keras_rmsprop", 0.01, epsilon=1e-8)
        ),
        "adam_course_epsilon": (Adam(0.01, epsilon=1e-8), optimizers.get("keras_adam", 0.01, epsilon=1e-8)),
        # Same update on paper; the difference is Keras' float32-rounded β = 0.9 in float64.
        "adam_epsilon_hat_beta_0.9": (
            Adam(0.01, epsilon=1e-8, epsilon_hat=True), optimizers.get("keras_adam", 0.01, epsilon=1e-8)
        ),
        "momentum_beta_0.9": (Momentum(0.01, beta=0.9), optimizers.get("keras_momentum", 0.01, beta=0.9)),
    }


# Measured relative differences (float64, these gradients) at steps 1, 10, 200, recorded to
# 2 significant digits; the README's table shows them.
MEASURED_DIVERGENCE = {
    "momentum_bias_correction": [9.0e-01, 6.5e-01, 6.9e-02],
    "momentum_decaying_alpha": [7.0e-08, 2.3e-01, 6.0e-01],
    "rmsprop_epsilon_outside_sqrt": [1.2e-01, 6.2e-02, 1.2e-02],
    "adam_course_epsilon": [5.3e-04, 3.2e-04, 5.2e-05],
    "adam_epsilon_hat_beta_0.9": [6.7e-06, 6.6e-06, 6.2e-06],
    "momentum_beta_0.9": [2.0e-16, 8.3e-08, 2.3e-07],
}


@pytest.mark.parametrize("case", ["momentum_bias_correction", "momentum_decaying_alpha",
                                  "rmsprop_epsilon_outside_sqrt", "adam_course_epsilon",
                                  "adam_epsilon_hat_beta_0.9", "momentum_beta_0.9"])
def test_measures_divergence_from_keras_where_not_equal(case, float64):
    ours, theirs = divergence_cases()[case]
    ours_path, keras_path = run(ours), run(theirs)
    measured = [relative_difference(keras_path[t - 1], ours_path[t - 1]) for t in (1, 10, 200)]
    print(f"\n{case}: relative difference at steps 1, 10, 200: " + ", ".join(f"{m:.2e}" for m in measured))
    # Far beyond float64 rounding (~1e-15), so the two really are different updates.
    assert max(measured) > 1e-9
    # Step 1 of momentum_beta_0.9 is pure rounding, so it gets an absolute tolerance.
    np.testing.assert_allclose(measured, MEASURED_DIVERGENCE[case], rtol=0.05, atol=1e-15)


# ---- convergence on test problems (minima known in closed form) -----------------------------

def minimize(optimizer, cost, start, steps):
    """Runs ``steps`` updates of ``optimizer`` on ``cost`` in one tf.function; returns w."""
    w = keras.Variable(np.array(start, dtype="float32"))
    optimizer.build([w])

    @tf.function
    def train():
        for _ in tf.range(steps):
            with tf.GradientTape() as tape:
                cost_value = cost(w)
            optimizer.apply([tape.gradient(cost_value, w)], [w])

    train()
    return w.numpy()


def decaying(alpha):
    # RMSprop's step stays about α near a minimum (g / √s ~ 1), so it needs a decaying α to settle.
    from tfnet.schedules import InverseTimeDecay

    return InverseTimeDecay(alpha, steps_per_epoch=100, decay_rate=1.0)


def parabola(w):
    return w[0] ** 2 - 10 * w[0] + 25  # (w − 5)², docs/methods.md §12


def ill_conditioned(w):
    return 0.5 * (w[0] ** 2 + 100 * w[1] ** 2)  # condition number 100, minimum at 0


def rosenbrock(w):
    return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2  # minimum at (1, 1)


CONVERGENCE_CASES = {
    # name: (problem, start, minimum, steps, {optimiser: factory})
    "parabola": (parabola, [0.0], [5.0], 5000, {
        "gd": lambda: GradientDescent(0.1), "momentum": lambda: Momentum(0.1, beta=0.9),
        "rmsprop": lambda: RMSprop(decaying(0.1)), "adam": lambda: Adam(0.1)}),
    "ill_conditioned": (ill_conditioned, [10.0, 1.0], [0.0, 0.0], 5000, {
        "gd": lambda: GradientDescent(0.015), "momentum": lambda: Momentum(0.1, beta=0.9),
        "rmsprop": lambda: RMSprop(decaying(0.1)), "adam": lambda: Adam(0.05)}),
    "rosenbrock": (rosenbrock, [-1.2, 1.0], [1.0, 1.0], 20000, {
        "gd": lambda: GradientDescent(1e-3), "momentum": lambda: Momentum(2e-3, beta=0.9),
        "rmsprop": lambda: RMSprop(decaying(1e-2)), "adam": lambda: Adam(1e-2)}),
}


@pytest.mark.parametrize("name", ["gd", "momentum", "rmsprop", "adam"])
@pytest.mark.parametrize("problem", CONVERGENCE_CASES)
def test_converges_to_known_minimum(problem, name):
    cost, start, minimum, steps, factories = CONVERGENCE_CASES[problem]
    np.testing.assert_allclose(minimize(factories[name](), cost, start, steps), minimum, atol=2e-3)


# ---- configuration and argument checks ------------------------------------------------------

CONFIG_CASES = {
    "gd": lambda: GradientDescent(0.05, clipnorm=1.0),
    "momentum": lambda: Momentum(0.05, beta=0.8, bias_correction=True, weight_decay=0.01),
    "rmsprop": lambda: RMSprop(0.05, beta2=0.95, epsilon=1e-6, epsilon_inside_sqrt=True),
    "adam": lambda: Adam(decaying(0.05), beta1=0.8, beta2=0.99, epsilon=1e-6, epsilon_hat=True),
}


@pytest.mark.parametrize("name", CONFIG_CASES)
def test_config_round_trips_through_keras_serialization(name):
    optimizer = CONFIG_CASES[name]()
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is type(optimizer)
    assert restored.get_config() == optimizer.get_config()
    assert restored.get_config() != type(optimizer)().get_config()  # the values really travelled


ERROR_CASES = [
    (GradientDescent, {"learning_rate": 0.0}, "learning_rate must be > 0. Received: learning_rate=0.0"),
    (Momentum, {"learning_rate": -0.1}, "learning_rate must be > 0. Received: learning_rate=-0.1"),
    (Momentum, {"beta": 1.0}, "beta must be in [0, 1). Received: beta=1.0"),
    (Momentum, {"beta": -0.1}, "beta must be in [0, 1). Received: beta=-0.1"),
    (RMSprop, {"learning_rate": 0}, "learning_rate must be > 0. Received: learning_rate=0"),
    (RMSprop, {"beta2": 1.5}, "beta2 must be in [0, 1). Received: beta2=1.5"),
    (RMSprop, {"epsilon": -1e-8}, "epsilon must be >= 0. Received: epsilon=-1e-08"),
    (Adam, {"learning_rate": -1}, "learning_rate must be > 0. Received: learning_rate=-1"),
    (Adam, {"beta1": 1}, "beta1 must be in [0, 1). Received: beta1=1"),
    (Adam, {"beta2": -0.5}, "beta2 must be in [0, 1). Received: beta2=-0.5"),
    (Adam, {"epsilon": -1.0}, "epsilon must be >= 0. Received: epsilon=-1.0"),
]


@pytest.mark.parametrize("cls, arguments, message", ERROR_CASES,
                         ids=[f"{c.__name__}-{next(iter(a))}={next(iter(a.values()))}" for c, a, _ in ERROR_CASES])
def test_invalid_argument_raises_value_error_naming_it(cls, arguments, message):
    with pytest.raises(ValueError) as error:
        cls(**arguments)
    assert str(error.value) == message


def test_epsilon_zero_is_valid():
    Adam(0.01, epsilon=0.0)
    RMSprop(0.01, epsilon=0.0)
