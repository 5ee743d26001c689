"""Gradient checking (docs/methods.md §4): autodiff against two-sided differences.

    report = check_gradients(model, x, y, loss)       # a Keras model's training cost
    report = check_function(fn, variables)            # any scalar fn(values) of variables
    report = check_jacobian(fn, inputs)               # any fn(values) -> tensor(s): a Jacobian
    assert_gradients_correct(model, x, y, loss)       # raises AssertionError with the table
    print(report)

Each derivative is checked in the autodiff modes asked for, as in JAX's check_grads:
`modes=("rev",)` (tf.GradientTape: for a `tf.custom_gradient`, its hand-written VJP) and "fwd"
(tf.autodiff.ForwardAccumulator JVPs, which TensorFlow derives from the forward ops, so a wrong
VJP shows up as forward and reverse mode disagreeing), and to `order=2` (the Hessian from
reverse-over-reverse and forward-over-reverse products against differences of the gradient, so a
gradient that is right but not itself differentiable is caught; `tfnet.gradcheck.second_order`).
`check_jacobian` (`tfnet.gradcheck.jacobian`) checks every entry of a Jacobian, or uᵀJv for
random directions, in both modes by default: the tool for a custom gradient.

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

Modes (`mode`):
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

from tfnet.gradcheck.checks import (
    assert_gradients_correct,
    check_function,
    check_gradients,
    check_jacobian,
)
from tfnet.gradcheck.jacobian_report import BlockDifference, JacobianCheckReport, JacobianEntry
from tfnet.gradcheck.numerics import NondeterministicCostError
from tfnet.gradcheck.report import Component, GradientCheckReport, VariableDifference

__all__ = [
    "BlockDifference",
    "Component",
    "GradientCheckReport",
    "JacobianCheckReport",
    "JacobianEntry",
    "NondeterministicCostError",
    "VariableDifference",
    "assert_gradients_correct",
    "check_function",
    "check_gradients",
    "check_jacobian",
]
