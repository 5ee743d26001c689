"""Second order: the Jacobian of a first derivative, checked as any Jacobian is.

For a scalar J(θ), g(θ) = ∇J(θ) from tf.GradientTape (for a `tf.custom_gradient`, its
hand-written VJP), and the Jacobian of g, the Hessian H = ∂g/∂θ, is compared three ways
(`tfnet.gradcheck.jacobian`):

    reverse:   reverse-over-reverse, the rows uᵀH: VJPs of g (a tape over the tape)
    forward:   forward-over-reverse, the columns Hv: JVPs of g (a ForwardAccumulator over the
               tape), i.e. Hessian-vector products
    numerical: (g(θ + h⁺ e_j) − g(θ − h⁻ e_j)) / (h⁺ + h⁻), two-sided differences of g

For a vector-valued f(x), g(x) = (∂f/∂x)ᵀw, the VJP with a fixed random unit cotangent w (as
torch's gradgradcheck draws random grad_outputs), whose Jacobian is the Hessian of wᵀf.

A first derivative whose values are right but which is not itself differentiable (a
`tf.stop_gradient` in a custom gradient's grad function, an op without a derivative) passes the
first-order check and fails this one: the differences of g see its true derivative, the
reverse-over-reverse and forward-over-reverse products do not.

References: torch.autograd.gradgradcheck; jax.test_util.check_grads(..., order=2).
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tfnet.gradcheck import jacobian

_WHAT = (
    "reverse = reverse-over-reverse (VJPs of g), forward = forward-over-reverse "
    "(JVPs of g: Hessian-vector products), numerical = two-sided differences of g"
)


def mode_for(mode, n):
    """The mode of the second-order check of n inputs: "full" (the whole n × n Hessian) for a
    full check of at most `jacobian.MAX_FULL_ENTRIES` entries, else "directional" (sampled
    entries of a Hessian would not compare rows from reverse mode with columns)."""
    return "full" if mode == "full" and n * n <= jacobian.MAX_FULL_ENTRIES else "directional"


def check_hessian(cost, values, names, *, mode, **kwargs):
    """The `JacobianCheckReport` of the Hessian of the scalar `cost(values)`.

    `kwargs` are those of `tfnet.gradcheck.jacobian.run` after `mode`.
    """

    def gradient(values):
        with tf.GradientTape() as tape:
            tape.watch(values)
            j = cost(values)
        return _flat(tape.gradient(j, values, unconnected_gradients=tf.UnconnectedGradients.ZERO))

    return jacobian.run(
        gradient, values, names,
        [(f"dJ/d {name}", tuple(v.shape)) for name, v in zip(names, values)],
        mode=mode_for(mode, _size(values)), modes=("rev", "fwd"),
        checked=f"second order: the Hessian of J, g = dJ/dθ from tf.GradientTape; {_WHAT}",
        describe_randomness=lambda g1, g2: (
            "the gradient of J is not a deterministic function of θ: two evaluations at the "
            "same θ differed, so finite differences cannot check its derivative."
        ),
        **kwargs,
    )


def check_vjp_jacobian(fn, values, names, m, *, mode, seed, **kwargs):
    """The `JacobianCheckReport` of x ↦ (∂f/∂x)ᵀw for `fn(values)` -> (m,) and a random unit w
    drawn from `seed`."""
    w = np.random.default_rng([seed, 2]).standard_normal(m)
    w /= np.linalg.norm(w)

    def vjp(values):
        with tf.GradientTape() as tape:
            tape.watch(values)
            y = fn(values)
        return _flat(
            tape.gradient(
                y, values, output_gradients=tf.constant(w, y.dtype),
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
        )

    return jacobian.run(
        vjp, values, names,
        [(f"wT df/d {name}", tuple(v.shape)) for name, v in zip(names, values)],
        mode=mode_for(mode, _size(values)), modes=("rev", "fwd"), seed=seed,
        checked=(
            "second order: the Hessian of wT f for a random unit cotangent w, g = (df/dx)T w "
            f"from tf.GradientTape; {_WHAT}"
        ),
        describe_randomness=lambda g1, g2: (
            "the VJP of `fn` is not a deterministic function of `inputs`: two evaluations at "
            "the same point differed, so finite differences cannot check its derivative."
        ),
        **kwargs,
    )


def attach(report, second):
    """`report` with `second_order` set and its verdict the worse of its own and the second's."""
    if second.verdict_difference > report.verdict_difference:
        return dataclasses.replace(
            report,
            second_order=second,
            verdict=second.verdict,
            verdict_difference=second.verdict_difference,
            verdict_from=f"second order: {second.verdict_from}",
        )
    return dataclasses.replace(report, second_order=second)


def _size(values):
    return sum(int(np.prod(v.shape)) for v in values)


def _flat(tensors):
    return tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0)
