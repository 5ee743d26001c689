"""Gradient checking (docs/methods.md §4): autodiff against two-sided differences.

    report = check_gradients(model, x, y, loss)       # a Keras model's training cost
    report = check_function(fn, variables)            # any scalar fn(values) of variables
    report = check_jacobian(fn, inputs)               # any fn(values) -> tensor(s): a Jacobian
    assert_gradients_correct(model, x, y, loss)       # raises AssertionError with the table
    print(report)

One engine (`engine`) checks them all, as JAX's check_grads applies one comparison to every mode
and order: a gradient is a 1 × N Jacobian whose blocks are the variables, the Hessian (`order=2`)
the Jacobian of the gradient. Reverse mode ("rev", a `tf.custom_gradient`'s hand-written VJP)
and forward mode ("fwd", JVPs derived from the forward ops) are compared with two-sided
differences and each other, overall and per block, into one `Report` (`report`); the options
are one `CheckOptions` record (`options`). `check_gradients` checks exactly what training
minimises, J(θ) = mean loss(y, model(x, training=True)) + sum(model.losses), on a float64 twin
of the model (`twin`), and refuses a J that is not deterministic (`NondeterministicCostError`).
"""

from tfnet.gradcheck.checks import (
    assert_gradients_correct,
    check_function,
    check_gradients,
    check_jacobian,
)
from tfnet.gradcheck.engine import NondeterministicCostError
from tfnet.gradcheck.options import CheckOptions
from tfnet.gradcheck.report import Block, Entry, Report

__all__ = [
    "Block",
    "CheckOptions",
    "Entry",
    "NondeterministicCostError",
    "Report",
    "assert_gradients_correct",
    "check_function",
    "check_gradients",
    "check_jacobian",
]
