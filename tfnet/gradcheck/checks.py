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

References: docs/methods.md §4; jax.test_util.check_grads (modes, order);
torch.autograd.gradcheck and gradgradcheck.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tfnet.gradcheck import engine
from tfnet.gradcheck import twin as twin_lib
from tfnet.gradcheck.options import CheckOptions, placement, variable_name

_SECOND_ORDER = (
    "reverse = reverse-over-reverse (VJPs of g), forward = forward-over-reverse "
    "(JVPs of g: Hessian-vector products), numerical = two-sided differences of g"
)


def check_gradients(model, x, y, loss, *, inference_layers=False, **options):
    """Checks the gradient of a Keras model's training cost J with respect to its trainable weights,

        J(θ) = mean over the batch of loss(y, model(x, training=True)) + sum(model.losses),

    on a twin of the model in `options.dtype` (float64, unless unavailable; `twin`).

    Args:
        model: a built Sequential or functional `keras.Model` whose layers can be cloned from
            their configs (custom layers included). Never modified.
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
    values = [v.value for v in model.trainable_variables]
    return _run(
        cost, values, [v.path for v in model.trainable_variables], [("J", ())],
        [v.value for v in model.non_trainable_variables], options, _gradient_of_j(values),
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
    return _check_fn(fn, variables, "variables", CheckOptions(kind="gradient", **options))


def check_jacobian(fn, inputs, **options):
    """Checks every entry of the Jacobian of `fn` in reverse and forward mode against differences.

    The tool for a `tf.custom_gradient`, a registered gradient or a hand-written backward pass:
    reverse mode calls them, forward mode and the differences do not. `fn(values)` is as in
    `check_function` but returns a floating tensor or a list of them; `inputs` a non-empty list
    of floating arrays, tensors or variables; `options` those of `check_gradients`, except that
    `mode` is "full" (every entry; at most 4,194,304 of them) or "directional" (uᵀJv for random
    unit u, v per output and input), and `modes` any non-empty tuple of "rev" and "fwd" (default
    both). Returns a `Report`.
    """
    return _check_fn(fn, inputs, "inputs", CheckOptions(kind="jacobian", **options))


def assert_gradients_correct(model, x, y, loss, **kwargs):
    """`check_gradients(model, x, y, loss, **kwargs)`, raising AssertionError with the report's
    table unless the verdict is "correct". Returns the report."""
    report = check_gradients(model, x, y, loss, **kwargs)
    if not report.correct:
        raise AssertionError(f"gradient check failed:\n{report}")
    return report


def _check_fn(fn, inputs, argument, options):
    """`check_function` (options.kind "gradient") or `check_jacobian` of `fn` at `inputs`."""
    if not callable(fn):
        raise ValueError(f"`fn` must be callable. Received: fn={fn!r}")
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise ValueError(f"`{argument}` must be a non-empty list of variables or arrays. "
                         f"Received: {argument}={inputs!r}")
    names = [variable_name(x, i, argument) for i, x in enumerate(inputs)]
    with placement(options.device):
        values = [tf.convert_to_tensor(x) for x in inputs]
        for name, value in zip(names, values):
            if not value.dtype.is_floating:
                raise ValueError(f"`{argument}` must be floating-point arrays, tensors or "
                                 f"variables. Received: {name} of dtype {value.dtype.name}")
        values = [tf.cast(value, options.dtype) for value in values]
        structure = fn(values)
    single = not isinstance(structure, (list, tuple))
    results = [structure] if single else list(structure)
    if not all(tf.as_dtype(r.dtype).is_floating for r in results):
        raise ValueError("`fn` must return a floating tensor or a list of them. Received: fn "
                         f"returning {[tf.as_dtype(r.dtype).name for r in results]}")
    gradient = options.kind == "gradient"
    if gradient and not (single and structure.shape.num_elements() == 1):
        raise ValueError("`fn` must return a scalar J (one element). Received: fn returning "
                         f"{[tuple(r.shape) for r in results]}")
    outputs = [("J", ())] if gradient else [
        ("output" if single else f"outputs[{q}]", tuple(r.shape)) for q, r in enumerate(results)]

    def flat_fn(values, state):
        result = fn(values)
        return tf.concat([tf.reshape(r, [-1]) for r in ([result] if single else result)], 0), state

    return _run(
        flat_fn, values, names, outputs, [], options,
        _gradient_of_j(values) if gradient else "the Jacobian of fn "
        f"({_size(s for _, s in outputs)} outputs x {_size(v.shape for v in values)} inputs)",
        _not_deterministic("`fn`", f"`{argument}`"),
    )


def _run(fn, values, names, outputs, state, options, checked, describe_randomness):
    """`engine.run`, and with order=2 the same for the Jacobian of g(x) = (∂f/∂x)ᵀw (see the
    module docstring) in `second_order`, the verdict the worse of the two."""
    report = engine.run(fn, values, names, outputs, state, options, checked=checked,
                        describe_randomness=describe_randomness)
    if options.order == 1:
        return report
    m = _size(s for _, s in outputs)
    w = np.ones(1) if m == 1 else np.random.default_rng([options.seed, 2]).standard_normal(m)
    w /= np.linalg.norm(w)

    def first_derivative(values, state):
        with tf.GradientTape() as tape:
            tape.watch(values)
            f = fn(values, state)[0]
        g = tape.gradient(f, values, output_gradients=tf.constant(w, f.dtype),
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return tf.concat([tf.reshape(t, [-1]) for t in g], 0), state

    # Sampled entries of a Hessian would not compare rows from reverse mode with columns.
    full = options.mode == "full" and _size(v.shape for v in values) ** 2 <= engine.MAX_FULL_ENTRIES
    y = outputs[0][0]
    what = (f"the Hessian of {y}, g = d{y}/dθ" if m == 1
            else "the Hessian of wT f for a random unit cotangent w, g = (df/dx)T w")
    second = engine.run(
        first_derivative, values, names,
        [((f"d{y}/d " if m == 1 else "wT df/d ") + name, tuple(v.shape))
         for name, v in zip(names, values)], state,
        dataclasses.replace(options, kind="jacobian", mode="full" if full else "directional",
                            modes=("rev", "fwd")),
        checked=f"second order: {what} from tf.GradientTape; {_SECOND_ORDER}",
        describe_randomness=_not_deterministic("the first derivative g", "the point"),
    )
    worse = second.verdict_difference > report.verdict_difference
    return dataclasses.replace(report, second_order=second, **(dict(
        verdict=second.verdict, verdict_difference=second.verdict_difference,
        verdict_from=f"second order: {second.verdict_from}") if worse else {}))


def _size(shapes):
    return sum(int(np.prod(s)) for s in shapes)


def _gradient_of_j(values):
    components = _size(v.shape for v in values)
    return f"the gradient of J ({len(values)} variables, {components:,} components)"


def _not_deterministic(what, of):
    return lambda y1, y2: (
        f"{what} is not a deterministic function of {of}: two evaluations at the same point "
        "gave different values, so finite differences cannot check its derivatives."
    )
