"""The public checks: a Keras model's training cost, any scalar function, any Jacobian.

See the package docstring (`tfnet.gradcheck`) for what is checked and how.
"""

import numpy as np
import tensorflow as tf

from tfnet.gradcheck import arguments, gradient, jacobian, second_order
from tfnet.gradcheck import twin as twin_lib


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
        modes: the autodiff modes checked against the differences, as in JAX's check_grads:
            ("rev",) (tf.GradientTape) or ("rev", "fwd") (also one ForwardAccumulator JVP per
            component or direction, compared with the differences and with reverse mode; where
            TensorFlow cannot compute a JVP the report says so in `forward_note`). Defaults to
            ("rev",).
        order: 1, or 2 to check the Hessian too (`tfnet.gradcheck.second_order`: reverse-over-
            reverse and forward-over-reverse products against two-sided differences of the
            gradient; in full mode the whole N × N Hessian up to 4,194,304 entries, else random
            directions, as `report.second_order.mode` says). Defaults to 1.
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

    References: docs/methods.md §4; jax.test_util.check_grads (modes, order); torch.autograd.gradcheck
    and gradgradcheck.
    """
    options = _options(mode, modes, order, epsilon, dtype, k_worst, samples_per_variable,
                       num_directions, batch_size, device, seed)
    device, dtype = options["device"], options["dtype"]
    with arguments.placement(device):
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

    return _check_cost(
        cost,
        [v.value for v in model.trainable_variables],
        [v.path for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        order=order,
        describe_randomness=describe_randomness,
        **options,
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
    arguments.check_function_and_values(fn, variables, "variables")
    options = _options(mode, modes, order, epsilon, dtype, k_worst, samples_per_variable,
                       num_directions, batch_size, device, seed)
    names = [arguments.variable_name(v, i) for i, v in enumerate(variables)]

    def describe_randomness(j1, j2):
        return (
            f"`fn` is not a deterministic function of `variables`: two evaluations at the same "
            f"values gave J={j1!r} and J={j2!r}, so finite differences cannot check its gradient."
        )

    return _check_cost(
        lambda values, state: (fn(values), state),
        [tf.convert_to_tensor(v) for v in variables],
        names,
        [],
        order=order,
        describe_randomness=describe_randomness,
        **options,
    )


def check_jacobian(
    fn,
    inputs,
    *,
    mode="full",
    modes=("rev", "fwd"),
    order=1,
    epsilon=None,
    dtype=None,
    k_worst=10,
    num_directions=4,
    batch_size=None,
    device=None,
    seed=0,
):
    """Checks every entry of the Jacobian of `fn` in reverse and forward mode against differences.

    The tool for a `tf.custom_gradient`, a registered gradient or a hand-written backward pass:
    reverse mode calls them, forward mode and the differences do not.

    Args:
        fn: `fn(values)` receives a list of tensors of the inputs' shapes, in `dtype`, and returns
            a floating tensor or a list of them; it must be traceable by tf.function and
            tf.vectorized_map and must not read the inputs themselves (their values are only
            the point x at which the check is made).
        inputs: a non-empty list of arrays, tensors or variables.
        mode: "full" (every entry; at most 4,194,304 of them) or "directional" (uᵀJv for
            `num_directions` random unit u, v per output and input). Defaults to "full".
        modes: a non-empty tuple of "rev" and "fwd": the autodiff modes checked. Defaults to
            ("rev", "fwd").
        order: 1, or 2 to check the second order too (`tfnet.gradcheck.second_order`: the
            Hessian of wᵀf for a random unit w, from reverse-over-reverse and forward-over-reverse
            against differences of the VJP; whole in full mode up to 4,194,304 entries, else
            along random directions). Defaults to 1.
        epsilon, dtype, k_worst, num_directions, batch_size, device, seed: as in
            `check_gradients` (batch_size: perturbations per vectorised call).

    Returns:
        A `JacobianCheckReport`; `print(report)` shows the table.
    """
    arguments.check_function_and_values(fn, inputs, "inputs")
    arguments.check_arguments(mode, epsilon, k_worst, 1, num_directions, batch_size,
                              allowed_modes=arguments.JACOBIAN_MODES)
    modes = arguments.check_modes(modes, require_rev=False)
    arguments.check_order(order)
    device = arguments.resolve_device(device)
    dtype = arguments.resolve_dtype(dtype, device)
    names = [arguments.variable_name(x, i, "inputs") for i, x in enumerate(inputs)]
    with arguments.placement(device):
        values = [tf.convert_to_tensor(x) for x in inputs]
        for name, value in zip(names, values):
            if not value.dtype.is_floating:
                raise ValueError(
                    f"`inputs` must be floating-point arrays, tensors or variables. Received: "
                    f"{name} of dtype {value.dtype.name}"
                )
        values = [tf.cast(value, dtype) for value in values]
        structure = fn(values)
    single = not isinstance(structure, (list, tuple))
    results = [structure] if single else list(structure)
    for result in results:
        if not tf.as_dtype(result.dtype).is_floating:
            raise ValueError(
                f"`fn` must return a floating tensor or a list of them. Received: fn returning "
                f"{[tf.as_dtype(r.dtype).name for r in results]}"
            )
    outputs = [
        ("output" if single else f"outputs[{q}]", tuple(r.shape)) for q, r in enumerate(results)
    ]

    def flat_fn(values):
        result = fn(values)
        return tf.concat([tf.reshape(r, [-1]) for r in ([result] if single else result)], axis=0)

    options = dict(epsilon=epsilon, dtype=dtype, k_worst=k_worst, num_directions=num_directions,
                   batch_size=batch_size, device=device)
    report = jacobian.run(
        flat_fn, values, names, outputs, mode=mode, modes=modes, seed=seed,
        checked=f"the Jacobian of fn ({sum(int(np.prod(s)) for _, s in outputs)} outputs x "
        f"{sum(int(np.prod(v.shape)) for v in values)} inputs)",
        describe_randomness=lambda y1, y2: (
            "`fn` is not a deterministic function of `inputs`: two evaluations at the same "
            "point differed, so finite differences cannot check its derivatives."
        ),
        **options,
    )
    if order == 1:
        return report
    m = sum(int(np.prod(s)) for _, s in outputs)
    second = second_order.check_vjp_jacobian(flat_fn, values, names, m, mode=mode, seed=seed,
                                             **options)
    return second_order.attach(report, second)


def assert_gradients_correct(model, x, y, loss, **kwargs):
    """`check_gradients(model, x, y, loss, **kwargs)`, raising AssertionError with the report's
    table unless the verdict is "correct". Returns the report."""
    report = check_gradients(model, x, y, loss, **kwargs)
    if not report.correct:
        raise AssertionError(f"gradient check failed:\n{report}")
    return report


def _options(mode, modes, order, epsilon, dtype, k_worst, samples_per_variable, num_directions,
             batch_size, device, seed):
    """The checked and resolved keyword arguments of `gradient.run_check` (order aside)."""
    arguments.check_arguments(mode, epsilon, k_worst, samples_per_variable, num_directions, batch_size)
    modes = arguments.check_modes(modes, require_rev=True)
    arguments.check_order(order)
    device = arguments.resolve_device(device)
    return dict(
        mode=mode, modes=modes, epsilon=epsilon, dtype=arguments.resolve_dtype(dtype, device),
        k_worst=k_worst, samples_per_variable=samples_per_variable,
        num_directions=num_directions, batch_size=batch_size, device=device, seed=seed,
    )


def _check_cost(cost, values, names, state, *, order, describe_randomness, **options):
    """`gradient.run_check`, followed by the second-order check of the Hessian when order=2."""
    report = gradient.run_check(
        cost, values, names, state, describe_randomness=describe_randomness, **options
    )
    if order == 1:
        return report
    with arguments.placement(options["device"]):
        state = [tf.convert_to_tensor(s) for s in state]
        second = second_order.check_hessian(
            lambda values: cost(values, state)[0], values, names,
            mode=options["mode"], epsilon=options["epsilon"], dtype=options["dtype"],
            k_worst=options["k_worst"], num_directions=options["num_directions"],
            batch_size=options["batch_size"], device=options["device"], seed=options["seed"],
        )
    return second_order.attach(report, second)
