"""The figure that decides the gradient check's verdict, against hand-computed values.

relative_difference = ‖a − b‖₂ / (‖a‖₂ + ‖b‖₂) (docs/methods.md §4): symmetric in its arguments,
0 for two zero vectors, 1 for opposite vectors; and its calibration, end to end: a gradient
scaled by (1 + s) gives s / (2 + s) (‖s g‖ / (‖g‖ + ‖(1 + s) g‖)), so 1.001× is about 5.0e-4,
"suspect", and 1.01× about 5.0e-3, "wrong", while the exact gradient is "correct".
"""

import numpy as np
import pytest
import tensorflow as tf

from tfnet import gradcheck
from tfnet.gradcheck import report as report_lib

HAND_COMPUTED = {
    # (a, b, ‖a − b‖ / (‖a‖ + ‖b‖))
    "orthogonal_3_4": ([3.0, 0.0], [0.0, 4.0], 5.0 / 7.0),
    "opposite": ([1.0, -2.0], [-1.0, 2.0], 1.0),
    "equal": ([0.5, 0.25, -4.0], [0.5, 0.25, -4.0], 0.0),
    "both_zero": ([0.0, 0.0], [0.0, 0.0], 0.0),
    "one_zero": ([0.0, 0.0], [1.0, 1.0], 1.0),
    "tenth_off": ([1.0, 2.0, 2.0], [1.1, 2.2, 2.2], 0.3 / 6.3),  # ‖a‖ = 3, ‖b‖ = 3.3
}


@pytest.mark.parametrize("case", sorted(HAND_COMPUTED))
def test_relative_difference_is_the_hand_computed_value_and_symmetric(case):
    a, b, expected = HAND_COMPUTED[case]
    a, b = np.array(a), np.array(b)
    assert report_lib.relative_difference(a, b) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert report_lib.relative_difference(b, a) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def _scaled_gradient(scale):
    """J(w) = Σ sin(w) w², whose gradient the custom gradient returns times ``scale``."""

    @tf.custom_gradient
    def cost(w):
        def gradient(upstream):
            return upstream * scale * (tf.cos(w) * w**2 + 2.0 * w * tf.sin(w))

        return tf.reduce_sum(tf.sin(w) * w**2), gradient

    return lambda values: cost(values[0])


@pytest.mark.parametrize("scale, verdict", [(1.0, "correct"), (1.001, "suspect"), (1.01, "wrong")])
def test_a_scaled_gradient_gets_its_calibrated_figure_and_verdict(scale, verdict):
    w = np.linspace(-2.0, 3.0, 12)
    report = gradcheck.check_function(_scaled_gradient(scale), [w])
    s = scale - 1.0
    assert report.relative_difference == pytest.approx(s / (2.0 + s), rel=1e-4, abs=1e-9)
    assert report.verdict == verdict
