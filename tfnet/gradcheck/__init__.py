"""Gradient checking (docs/methods.md §4): autodiff against two-sided differences.

    report = check_gradients(model, x, y, loss)       # a Keras model's training cost
    report = check_function(fn, variables)            # any scalar fn(values) of variables
    report = check_jacobian(fn, inputs)               # any fn(values) -> tensor(s): a Jacobian
    assert_gradients_correct(model, x, y, loss)       # raises AssertionError with the table
    print(report)

One engine (`tfnet.gradcheck.engine`) checks them all, as JAX's check_grads applies one comparison
to every mode and order: a gradient is a 1 × N Jacobian whose blocks are the variables, the
Hessian (`order=2`) the Jacobian of the gradient. Each entry is checked in the autodiff modes
asked for (`modes`): "rev" (tf.GradientTape: for a `tf.custom_gradient`, its hand-written VJP)
and "fwd" (tf.autodiff.ForwardAccumulator JVPs, which TensorFlow derives from the forward ops, so
a wrong VJP shows up as forward and reverse mode disagreeing), against the differences and each
other, overall and per block, into one `Report` (`tfnet.gradcheck.report`): figures, a verdict,
the worst entries and the kinks. The options are one `CheckOptions` record
(`tfnet.gradcheck.options`): `mode` "full", "sampled" or "directional", `modes`, `order`,
`epsilon`, `dtype`, `k_worst`, `samples_per_variable`, `num_directions`, `batch_size`, `device`,
`seed`.

The cost `check_gradients` checks is exactly what training minimises,

    J(θ) = mean over the batch of loss(y, model(x, training=True)) + sum(model.losses),

the model's regularisation losses (L2 terms, activity regularisers, add_loss) included. It runs
in float64 on a twin of the model (`tfnet.gradcheck.twin`: every layer cloned from its config with
a float64 dtype policy, convolutions and pooling included, the weights passed in), so the user's
model is never modified; where float64 is unavailable (TPU) it runs in float32 with a larger step
and rescaled thresholds, and the report says so. BatchNorm runs in training mode (batch
statistics); no moving average is written. J must be a deterministic function of θ: J is
evaluated twice at the same θ (with the layers' state, e.g. dropout seeds, advanced in between)
and the check refuses to run if the two differ, naming the stochastic layers
(`NondeterministicCostError`, a ValueError), unless `inference_layers` tells it to run them in
inference mode.
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
