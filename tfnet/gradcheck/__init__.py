"""Gradient checking (METHODS.md §4): tf.GradientTape against two-sided differences.

    report = check_gradients(model, x, y, loss)       # a Keras model's training cost
    report = check_function(fn, variables)            # any scalar fn(values) of variables
    assert_gradients_correct(model, x, y, loss)       # raises AssertionError with the table
    print(report)

The cost checked is exactly what training minimises,

    J(θ) = mean over the batch of loss(y, model(x, training=True)) + sum(model.losses),

the model's regularisation losses (L2 terms, activity regularisers, add_loss) included. The check
runs in float64 on a twin of the model (its layers cloned with a float64 dtype policy, the
weights cast in), so the user's model is never modified; where float64 is unavailable (TPU) it
runs in float32 with a larger step and rescaled thresholds, and the report says so. BatchNorm runs
in training mode (batch statistics); no moving average is written. J must be a deterministic
function of θ: J is evaluated twice at the same θ (with the layers' state, e.g. dropout seeds,
advanced in between) and the check refuses to run if the two differ, naming the stochastic
layers (`NondeterministicCostError`, a ValueError), unless `inference_layers` tells it to run
them in inference mode.

Modes:
    full:        every component of θ (2N evaluations of J).
    sampled:     per variable, the `samples_per_variable` components with the largest |dθ| and
                 as many random others.
    directional: per variable, `num_directions` random unit directions u on that variable,
                 (J(θ + h u) − J(θ − h u)) / 2h against g·u: cost independent of N.

Differences from `tf.test.compute_gradient`: it returns two Jacobians and leaves the comparison to
the caller, perturbs every input with a fixed delta in the input's dtype, and evaluates the
function once per perturbation from Python; here the step is relative (epsilon * max(1, |θ_i|)),
the verdict, per-variable figures, worst components and kinks are computed, and the perturbed
evaluations run vectorised in one compiled tf.function.
"""

import contextlib

import keras
import tensorflow as tf

from tfnet.gradcheck import gradient, numerics
from tfnet.gradcheck import twin as twin_lib
from tfnet.gradcheck.numerics import NondeterministicCostError
from tfnet.gradcheck.report import Component, GradientCheckReport, VariableDifference

__all__ = [
    "Component",
    "GradientCheckReport",
    "NondeterministicCostError",
    "VariableDifference",
    "assert_gradients_correct",
    "check_function",
    "check_gradients",
]

_DTYPES = ("float64", "float32")


def check_gradients(
    model,
    x,
    y,
    loss,
    *,
    mode="full",
    modes=("rev",),
    order=1,
    epsilon=None,
    dtype=None,
    k_worst=10,
    samples_per_variable=10,
    num_directions=4,
    inference_layers=False,
    batch_size=None,
    device=None,
    seed=0,
):
    """Checks the gradient of a Keras model's training cost J with respect to its trainable weights.

    Args:
        model: a built Sequential or functional `keras.Model` (custom layers included, as long as
            they implement `get_config`). Never modified.
        x, y: one batch of inputs and targets.
        loss: a `keras.losses.Loss`, a Keras loss name, or a callable `(y, y_pred)` returning
            per-example losses; J takes its mean over the batch.
        mode: "full", "sampled" or "directional". Defaults to "full".
        epsilon: relative step, h_i = epsilon * max(1, |θ_i|). Defaults to None: eps^(1/3) of the
            dtype (6.1e-6 in float64, 4.9e-3 in float32).
        dtype: "float64" or "float32". Defaults to None: float64, or float32 on a TPU.
        k_worst: how many worst components the report lists. Defaults to 10.
        samples_per_variable: in "sampled" mode, the number of largest-gradient components and of
            random components checked per variable. Defaults to 10.
        num_directions: in "directional" mode, random directions per variable. Defaults to 4.
        inference_layers: False (defaults), True (every stochastic layer) or a list of layer
            names to run with `training=False` in the check.
        batch_size: perturbations evaluated per vectorised call. Defaults to None: as many as
            fit in 32 MiB of parameter vectors, at most 512.
        device: e.g. "/GPU:0" or "/TPU:0". Defaults to None: the current tf.distribute strategy's
            first device, else TensorFlow's default placement.
        seed: seed of the sampled components and random directions. Defaults to 0.

    Returns:
        A `GradientCheckReport`; `print(report)` shows the table.
    """
    numerics.check_arguments(mode, epsilon, k_worst, samples_per_variable, num_directions, batch_size)
    modes = numerics.check_modes(modes, require_rev=True)
    numerics.check_order(order)
    device = _resolve_device(device)
    dtype = _resolve_dtype(dtype, device)
    with _placement(device):
        twin = twin_lib.float_twin(model, dtype)
        inference = twin_lib.run_in_inference_mode(twin, inference_layers)
        cost = twin_lib.model_cost(twin, x, y, loss, dtype)
    stochastic = [name for name in twin_lib.stochastic_layers(twin) if name not in inference]

    def describe_randomness(j1, j2):
        found = (
            f"stochastic layers: {stochastic}; pass inference_layers={stochastic!r} (or True) to "
            "run them in inference mode"
            if stochastic
            else "no layer with a random seed generator was found: look for layers that draw "
            "random numbers (tf.random) in training mode"
        )
        return (
            f"J is not a deterministic function of the weights of model {model.name!r}: two "
            f"evaluations at the same weights gave J={j1!r} and J={j2!r}, so finite differences "
            f"cannot check its gradient; {found}."
        )

    return gradient.run_check(
        cost,
        [v.value for v in model.trainable_variables],
        [v.path for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        mode=mode,
        modes=modes,
        epsilon=epsilon,
        dtype=dtype,
        k_worst=k_worst,
        samples_per_variable=samples_per_variable,
        num_directions=num_directions,
        batch_size=batch_size,
        device=device,
        seed=seed,
        describe_randomness=describe_randomness,
    )


def check_function(
    fn,
    variables,
    *,
    mode="full",
    modes=("rev",),
    order=1,
    epsilon=None,
    dtype=None,
    k_worst=10,
    samples_per_variable=10,
    num_directions=4,
    batch_size=None,
    device=None,
    seed=0,
):
    """Checks the gradient of any scalar function of some variables.

    `fn(values)` receives a list of tensors of the variables' shapes, in `dtype`, and returns J;
    it must be traceable by tf.function and tf.vectorized_map and must not read the variables
    themselves (their values are only the point θ at which the check is made). The other
    arguments are those of `check_gradients`.
    """
    if not callable(fn):
        raise ValueError(f"`fn` must be callable. Received: fn={fn!r}")
    if not isinstance(variables, (list, tuple)) or not variables:
        raise ValueError(
            f"`variables` must be a non-empty list of variables or arrays. "
            f"Received: variables={variables!r}"
        )
    numerics.check_arguments(mode, epsilon, k_worst, samples_per_variable, num_directions, batch_size)
    modes = numerics.check_modes(modes, require_rev=True)
    numerics.check_order(order)
    device = _resolve_device(device)
    dtype = _resolve_dtype(dtype, device)
    names = [_variable_name(v, i) for i, v in enumerate(variables)]

    def describe_randomness(j1, j2):
        return (
            f"`fn` is not a deterministic function of `variables`: two evaluations at the same "
            f"values gave J={j1!r} and J={j2!r}, so finite differences cannot check its gradient."
        )

    return gradient.run_check(
        lambda values, state: (fn(values), state),
        [tf.convert_to_tensor(v) for v in variables],
        names,
        [],
        mode=mode,
        modes=modes,
        epsilon=epsilon,
        dtype=dtype,
        k_worst=k_worst,
        samples_per_variable=samples_per_variable,
        num_directions=num_directions,
        batch_size=batch_size,
        device=device,
        seed=seed,
        describe_randomness=describe_randomness,
    )


def assert_gradients_correct(model, x, y, loss, **kwargs):
    """`check_gradients(model, x, y, loss, **kwargs)`, raising AssertionError with the report's
    table unless the verdict is "correct". Returns the report."""
    report = check_gradients(model, x, y, loss, **kwargs)
    if not report.correct:
        raise AssertionError(f"gradient check failed:\n{report}")
    return report


def _variable_name(variable, i):
    if isinstance(variable, keras.Variable):
        return variable.path
    if isinstance(variable, tf.Variable):
        return variable.name.split(":")[0]
    return f"variables[{i}]"


def _resolve_device(device):
    if device is not None:
        if not isinstance(device, str) or not device:
            raise ValueError(
                f"`device` must be None or a device name such as '/GPU:0'. Received: device={device!r}"
            )
        return device
    if tf.distribute.has_strategy():
        return tf.distribute.get_strategy().extended.worker_devices[0]
    return None


def _resolve_dtype(dtype, device):
    if dtype is None:
        # TPUs have no float64 arithmetic.
        return "float32" if device and "TPU" in device.upper() else "float64"
    dtype = tf.as_dtype(dtype).name if isinstance(dtype, tf.DType) else dtype
    if dtype not in _DTYPES:
        raise ValueError(f"`dtype` must be one of {_DTYPES} or None. Received: dtype={dtype!r}")
    return dtype


def _placement(device):
    return tf.device(device) if device else contextlib.nullcontext()
