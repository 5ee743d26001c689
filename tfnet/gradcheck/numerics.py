"""The numerics every check shares: steps, two-sided differences, kinks, thresholds, verdicts.

For a probe i (a component of θ, or a random direction u) with step h_i = epsilon * max(1, |θ_i|)
and a function f with outputs f_m (f = J, a cost, for a gradient check):

    numerical[i, m] = (f_m(θ + h⁺ e_i) − f_m(θ − h⁻ e_i)) / (h⁺ + h⁻)
    forward[i, m]   = (f_m(θ + h⁺ e_i) − f_m(θ)) / h⁺,    backward[i, m] = (f_m(θ) − f_m(θ − h⁻ e_i)) / h⁻

where h⁺ = (θ_i + h_i) − θ_i and h⁻ = θ_i − (θ_i − h_i) are the steps actually representable in
the dtype (both equal h_i up to round-off). In `directional` mode e_i is replaced by a random unit
vector u supported on one variable (h = epsilon * max(1, max|θ_variable|)).

An entry is a kink (a non-differentiable point within the step, e.g. a ReLU input within h of 0)
when its one-sided differences disagree and the autodiff value a sides with one of them:

    |forward − backward| > 1e-3 max(|forward|, |backward|) + 64 unit
    and min(|a − forward|, |a − backward|) < |forward − backward| / 4

with unit = eps max(1, |f|) / min(h⁺, h⁻), f's round-off seen through the smaller step. For smooth
f, forward − backward ≈ h f'' and a lies half-way between them, so neither condition is met by a
wrong derivative unless |f''| h ≳ 0.4 |a|. A bound on one central difference's round-off is
r = 16 unit (errors of correct gradients measured on the test models: 0.1 to 1 unit, up to 10
where the h² term adds in).
"""

import numpy as np
import tensorflow as tf

# Thresholds on the relative difference in float64 (docs/methods.md §4).
CORRECT_THRESHOLD = 1e-7
WRONG_THRESHOLD = 1e-3
_ROUND_OFF_UNITS = 16
_KINK_NOISE_UNITS = 64
# Bytes of perturbed parameter vectors held at once when the batch size is chosen automatically.
_BATCH_BYTES = 1 << 25
_MAX_BATCH = 512


class NondeterministicCostError(ValueError):
    """J differed between two evaluations at the same θ (dropout active, random augmentation)."""


def default_epsilon(dtype):
    """The central-difference step balancing truncation and round-off: eps^(1/3) of the dtype."""
    return float(np.finfo(tf.as_dtype(dtype).as_numpy_dtype).eps ** (1.0 / 3.0))


def default_batch_size(n, dtype):
    """As many perturbations as fit in 32 MiB of parameter vectors of n components, at most 512."""
    itemsize = tf.as_dtype(dtype).size
    return int(np.clip(_BATCH_BYTES // (max(n, 1) * itemsize), 1, _MAX_BATCH))


def thresholds(dtype):
    """(correct_threshold, wrong_threshold, note) for a check run in `dtype`.

    float64: 1e-7 and 1e-3 (docs/methods.md §4). Otherwise the round-off of J grows by
    eps_dtype / eps_float64, so the correct threshold is multiplied by sqrt of that ratio (2.3e4
    for float32, giving 2.3e-3) and the wrong threshold is max(1e-3, 10 × correct threshold).
    """
    eps = np.finfo(tf.as_dtype(dtype).as_numpy_dtype).eps
    eps64 = np.finfo(np.float64).eps
    if eps <= eps64:
        return CORRECT_THRESHOLD, WRONG_THRESHOLD, ""
    correct = CORRECT_THRESHOLD * float(np.sqrt(eps / eps64))
    wrong = max(WRONG_THRESHOLD, 10.0 * correct)
    note = (
        f"ran in {tf.as_dtype(dtype).name}, not float64: thresholds rescaled from 1e-7 / 1e-3 to "
        f"{correct:.1e} / {wrong:.1e} (x sqrt(eps_{tf.as_dtype(dtype).name} / eps_float64))"
    )
    return correct, wrong, note


def verdict(difference, correct_threshold, wrong_threshold):
    """"correct" (≤ correct_threshold), "suspect" (≤ wrong_threshold) or "wrong"."""
    if difference <= correct_threshold:
        return "correct"
    return "suspect" if difference <= wrong_threshold else "wrong"


def verdict_fields(candidates, dtype):
    """The report fields of the verdict from (relative difference, where) candidates: the worst
    decides (ties: the first listed), against the thresholds of `dtype`."""
    correct_threshold, wrong_threshold, note = thresholds(dtype)
    difference, where = max(candidates, key=lambda c: c[0])
    return dict(
        verdict=verdict(difference, correct_threshold, wrong_threshold),
        verdict_difference=difference,
        verdict_from=where,
        correct_threshold=correct_threshold,
        wrong_threshold=wrong_threshold,
        threshold_note=note,
    )


def steps(theta_probed, epsilon, np_dtype):
    """(h⁺, h⁻) in float64: the representable steps θ_i ± epsilon * max(1, |θ_i|) − θ_i."""
    h = epsilon * np.maximum(1.0, np.abs(theta_probed))
    h_plus = ((theta_probed + h).astype(np_dtype) - theta_probed).astype(np.float64)
    h_minus = (theta_probed - (theta_probed - h).astype(np_dtype)).astype(np.float64)
    return h_plus, h_minus


def differences(f0, f_plus, f_minus, h_plus, h_minus, scale, np_dtype):
    """(numerical, forward, backward, unit) as in the module docstring.

    f_plus, f_minus: (P, M) values at θ ± h e_i; f0: at θ, broadcastable to (P, M);
    h_plus, h_minus: (P,) steps; scale: max(1, |f|) (of each output, or of its output tensor),
    broadcastable to (P, M); np_dtype: the dtype f was computed in, whose eps sets the unit.
    """
    h_plus, h_minus = h_plus[:, None], h_minus[:, None]
    numerical = (f_plus - f_minus) / (h_plus + h_minus)
    forward = (f_plus - f0) / h_plus
    backward = (f0 - f_minus) / h_minus
    unit = np.finfo(np_dtype).eps * np.asarray(scale) / np.minimum(h_plus, h_minus)
    return numerical, forward, backward, unit


def kinks(autodiff, forward, backward, unit):
    """Boolean array: where the one-sided differences disagree and `autodiff` sides with one."""
    jump = np.abs(forward - backward)
    return (
        jump > 1e-3 * np.maximum(np.abs(forward), np.abs(backward)) + _KINK_NOISE_UNITS * unit
    ) & (np.minimum(np.abs(autodiff - forward), np.abs(autodiff - backward)) < jump / 4)


def round_off(unit):
    """r = 16 unit: a bound on one central difference's round-off."""
    return _ROUND_OFF_UNITS * unit
