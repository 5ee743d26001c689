"""The public checks: a Keras model's training cost, any scalar function, any Jacobian.

Each states its function as fn(values, state) -> (y, new_state) with y flat, and hands it to the
one engine (`tfnet.gradcheck.engine.run`); with order=2 the engine checks the Jacobian of the
first derivative g(x) = (∂f/∂x)ᵀw too (w = 1 for a scalar: g = ∇J and its Jacobian the Hessian;
else a fixed random unit w, as torch's gradgradcheck draws random grad_outputs):

    reverse:   reverse-over-reverse, the rows uᵀ(∂g/∂x): VJPs of g (a tape over the tape)
    forward:   forward-over-reverse, the columns (∂g/∂x)v: JVPs of g (Hessian-vector products)
    numerical: (g(x + h⁺ e_j) − g(x − h⁻ e_j)) / (h⁺ + h⁻), two-sided differences of g

A first derivative whose values are right but which is not itself differentiable (a
`tf.stop_gradient` in a custom gradient's grad function, an op without a derivative) passes the
first-order check and fails this one: the differences of g see its true derivative, the
reverse-over-reverse and forward-over-reverse products do not.

See the package docstring (`tfnet.gradcheck`) for what is checked and how. References:
docs/methods.md §4; jax.test_util.check_grads (modes, order); torch.autograd.gradcheck and
gradgradcheck.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tfnet.gradcheck import engine
from tfnet.gradcheck import twin as twin_lib
from tfnet.gradcheck.options import (
    CheckOptions,
    check_function_and_values,
    placement,
    variable_name,
)

_SECOND_ORDER = (
    "reverse = reverse-over-reverse (VJPs of g), forward = forward-over-reverse "
    "(JVPs of g: Hessian-vector products), numerical = two-sided differences of g"
)


def check_gradients(model, x, y, loss, *, inference_layers=False, **options):
    """Checks the gradient of a Keras model's training cost J with respect to its trainable weights.

        J(θ) = mean over the batch of loss(y, model(x, training=True)) + sum(model.losses)

    computed on a twin of the model in `options.dtype` (float64, unless unavailable).

    Args:
        model: a built Sequential or functional `keras.Model` whose layers can be cloned from
            their configs (custom layers included, as long as they implement `get_config`).
            Never modified.
        x, y: one batch of inputs and targets.
        loss: a `keras.losses.Loss`, a Keras loss name, or a callable `(y, y_pred)` returning
            per-example losses; J takes its mean over the batch.
        inference_layers: False (default), True (every stochastic layer) or a list of layer
            names to run with `training=False` in the check.
        **options: the fields of `tfnet.gradcheck.options.CheckOptions` (mode, modes, order,
            epsilon, dtype, k_worst, samples_per_variable, num_directions, batch_size, device,
            seed), each described there with its default.

    Returns:
        A `tfnet.gradcheck.report.Report`; `print(report)` shows the table.
    """
    options = CheckOptions(kind="gradient", **options)
    with placement(options.device):
        twin = twin_lib.float_twin(model, options.dtype)
        inference = twin_lib.run_in_inference_mode(twin, inference_layers)
        cost = twin_lib.model_cost(twin, x, y, loss, options.dtype)
    stochastic = [name for name in twin_lib.stochastic_layers(twin) if name not in inference]
    found = (
        f"stochastic layers: {stochastic}; pass inference_layers={stochastic!r} (or True) to run "
        "them in inference mode" if stochastic
        else "no layer with a random seed generator was found: look for layers that draw random "
        "numbers (tf.random) in training mode"
    )
    return _check(
        cost, [v.value for v in model.trainable_variables],
        [v.path for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables], options,
        lambda j1, j2: (
            f"J is not a deterministic function of the weights of model {model.name!r}: two "
            f"evaluations at the same weights gave J={float(j1[0])!r} and J={float(j2[0])!r}, "
            f"so finite differences cannot check its gradient; {found}."
        ),
    )


def check_function(fn, variables, **options):
    """Checks the gradient of any scalar function of some variables.

    `fn(values)` receives a list of tensors of the variables' shapes, in `dtype`, and returns J;
    it must be traceable by tf.function and tf.vectorized_map and must not read the variables
    themselves (their values are only the point θ at which the check is made). `options` are
    those of `check_gradients`. Returns a `Report`.
    """
    check_function_and_values(fn, variables, "variables")
    options = CheckOptions(kind="gradient", **options)
    return _check(
        lambda values, state: (fn(values), state),
        [tf.convert_to_tensor(v) for v in variables],
        [variable_name(v, i, "variables") for i, v in enumerate(variables)], [], options,
        lambda j1, j2: (
            f"`fn` is not a deterministic function of `variables`: two evaluations at the same "
            f"values gave J={float(j1[0])!r} and J={float(j2[0])!r}, so finite differences "
            "cannot check its gradient."
        ),
    )


def check_jacobian(fn, inputs, **options):
    """Checks every entry of the Jacobian of `fn` in reverse and forward mode against differences.

    The tool for a `tf.custom_gradient`, a registered gradient or a hand-written backward pass:
    reverse mode calls them, forward mode and the differences do not.

    Args:
        fn: `fn(values)` receives a list of tensors of the inputs' shapes, in `dtype`, and returns
            a floating tensor or a list of them; it must be traceable by tf.function and
            tf.vectorized_map and must not read the inputs themselves (their values are only
            the point x at which the check is made).
        inputs: a non-empty list of arrays, tensors or variables.
        **options: as in `check_gradients`, except that `mode` is "full" (every entry; at most
            4,194,304 of them) or "directional" (uᵀJv for `num_directions` random unit u, v per
            output and input), and `modes` any non-empty tuple of "rev" and "fwd" (default both).

    Returns:
        A `Report`; `print(report)` shows the table.
    """
    check_function_and_values(fn, inputs, "inputs")
    options = CheckOptions(kind="jacobian", **options)
    names = [variable_name(x, i, "inputs") for i, x in enumerate(inputs)]
    with placement(options.device):
        values = [tf.convert_to_tensor(x) for x in inputs]
        for name, value in zip(names, values):
            if not value.dtype.is_floating:
                raise ValueError(
                    f"`inputs` must be floating-point arrays, tensors or variables. Received: "
                    f"{name} of dtype {value.dtype.name}"
                )
        values = [tf.cast(value, options.dtype) for value in values]
        structure = fn(values)
    single = not isinstance(structure, (list, tuple))
    results = [structure] if single else list(structure)
    if not all(tf.as_dtype(r.dtype).is_floating for r in results):
        raise ValueError(
            f"`fn` must return a floating tensor or a list of them. Received: fn returning "
            f"{[tf.as_dtype(r.dtype).name for r in results]}"
        )
    outputs = [("output" if single else f"outputs[{q}]", tuple(r.shape))
               for q, r in enumerate(results)]

    def flat_fn(values, state):
        result = fn(values)
        return tf.concat([tf.reshape(r, [-1]) for r in ([result] if single else result)], 0), state

    m = sum(int(np.prod(s)) for _, s in outputs)
    n = sum(int(np.prod(v.shape)) for v in values)
    return _with_second_order(
        engine.run(flat_fn, values, names, outputs, [], options, gradient=False,
                   checked=f"the Jacobian of fn ({m} outputs x {n} inputs)",
                   describe_randomness=_not_deterministic("`fn`", "`inputs`")),
        flat_fn, values, names, outputs, [], options,
    )


def assert_gradients_correct(model, x, y, loss, **kwargs):
    """`check_gradients(model, x, y, loss, **kwargs)`, raising AssertionError with the report's
    table unless the verdict is "correct". Returns the report."""
    report = check_gradients(model, x, y, loss, **kwargs)
    if not report.correct:
        raise AssertionError(f"gradient check failed:\n{report}")
    return report


def _check(cost, values, names, state, options, describe_randomness):
    """The gradient of the scalar `cost(values, state) -> (J, new_state)`, and its Hessian."""

    def flat_cost(values, state):
        j, new_state = cost(values, state)
        return tf.reshape(j, [1]), new_state

    first = engine.run(
        flat_cost, values, names, [("J", ())], state, options, gradient=True,
        checked=f"the gradient of J ({len(values)} variables, "
        f"{sum(int(np.prod(v.shape)) for v in values):,} components)",
        describe_randomness=describe_randomness,
    )
    return _with_second_order(first, flat_cost, values, names, [("J", ())], state, options)


def _with_second_order(report, fn, values, names, outputs, state, options):
    """`report`, or with order=2 the same with `second_order`, the report of the Jacobian of
    g(x) = (∂f/∂x)ᵀw (see the module docstring), and the worse verdict of the two."""
    if options.order == 1:
        return report
    m = int(sum(np.prod(s) for _, s in outputs))
    w = np.ones(1) if m == 1 else np.random.default_rng([options.seed, 2]).standard_normal(m)
    w /= np.linalg.norm(w)

    def first_derivative(values, state):
        with tf.GradientTape() as tape:
            tape.watch(values)
            f = fn(values, state)[0]
        g = tape.gradient(f, values, output_gradients=tf.constant(w, f.dtype),
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return tf.concat([tf.reshape(t, [-1]) for t in g], 0), state

    n = sum(int(np.prod(v.shape)) for v in values)
    full = options.mode == "full" and n * n <= engine.MAX_FULL_ENTRIES
    # Sampled entries of a Hessian would not compare rows from reverse mode with columns.
    what = (f"the Hessian of {outputs[0][0]}, g = d{outputs[0][0]}/dθ" if m == 1
            else "the Hessian of wT f for a random unit cotangent w, g = (df/dx)T w")
    second = engine.run(
        first_derivative, values, names,
        [((f"d{outputs[0][0]}/d " if m == 1 else "wT df/d ") + name, tuple(v.shape))
         for name, v in zip(names, values)],
        state, dataclasses.replace(options, mode="full" if full else "directional",
                                   modes=("rev", "fwd")),
        gradient=False, checked=f"second order: {what} from tf.GradientTape; {_SECOND_ORDER}",
        describe_randomness=_not_deterministic("the first derivative g", "the point"),
    )
    worse = second.verdict_difference > report.verdict_difference
    return dataclasses.replace(report, second_order=second, **(dict(
        verdict=second.verdict, verdict_difference=second.verdict_difference,
        verdict_from=f"second order: {second.verdict_from}") if worse else {}))


def _not_deterministic(what, of):
    return lambda y1, y2: (
        f"{what} is not a deterministic function of {of}: two evaluations at the same point "
        "differed, so finite differences cannot check its derivatives."
    )
