"""Forward mode (modes=("rev", "fwd")) and second order (order=2) of check_gradients / check_function.

The planted bugs are those of `test_gradcheck.PlantedDense`, a Dense layer whose tf.custom_gradient
can be made wrong: forward mode derives its JVPs from the forward ops and so never sees the planted
VJP, which is how a wrong VJP shows up as forward and reverse mode disagreeing.
"""

import re

import numpy as np
import pytest
import tensorflow as tf

from test_gradcheck import L2, _data, _he_l2_mlp, _planted_model, _sparse_xent
from tfnet import gradcheck


def test_forward_mode_agrees_with_the_differences_where_the_custom_vjp_is_wrong():
    x, y = _data()
    model = _planted_model("scaled_kernel")
    report = gradcheck.check_gradients(model, x, y, _sparse_xent(), modes=("rev", "fwd"))
    assert report.modes == ("rev", "fwd") and report.verdict == "wrong", report
    assert report.forward_relative_difference <= 1e-7, report  # JVPs never call the VJP
    assert report.forward_reverse_difference > 1e-3, report
    by_name = {b.name: b for b in report.blocks}
    assert by_name["planted/kernel"].forward_reverse_difference > 1e-3, report
    assert all(
        v.forward_reverse_difference <= 1e-7 and v.forward_relative_difference <= 1e-7
        for name, v in by_name.items() if name != "planted/kernel"
    ), report
    worst = report.worst[0]
    assert worst.input == "planted/kernel", report
    np.testing.assert_allclose(worst.forward, worst.numerical, rtol=1e-7)
    # The planted VJP returns 1.1 × the data term's dJ/dW; the L2 term's 2λW is right.
    l2_gradient = 2 * L2 * model.get_layer("planted").kernel.numpy()[worst.input_index]
    np.testing.assert_allclose(worst.reverse, 1.1 * (worst.forward - l2_gradient) + l2_gradient,
                               rtol=1e-6)
    assert re.search(r"^relative difference overall: reverse vs numerical \S+, forward vs "
                     r"numerical \S+, forward vs reverse \S+  ->  WRONG", str(report),
                     re.MULTILINE), report


def test_forward_mode_of_a_correct_model_is_correct_along_directions():
    # (Per component, the test above finds the JVPs of every right variable right.)
    x, y = _data()
    report = gradcheck.check_gradients(
        _he_l2_mlp(), x, y, _sparse_xent(), modes=("fwd", "rev"), mode="directional"
    )
    assert report.modes == ("rev", "fwd") and report.verdict == "correct", report
    assert report.forward_relative_difference <= 1e-7 and report.forward_reverse_difference <= 1e-12
    assert len(report.worst) == 10 and all(c.forward is not None for c in report.worst), report
    # 4 variables x 4 directions: J twice at θ and twice per direction, one JVP per direction and
    # one VJP (the gradient) for all: J has one output, so every direction shares the cotangent 1.
    assert (report.evaluations, report.vjps, report.jvps) == (2 + 2 * 16, 1, 16), report


@tf.custom_gradient
def _sum_of_sines_hidden_from_forward_mode(w):
    # The value is computed under tf.stop_gradient, so forward mode, which derives JVPs from the
    # forward ops, sees a constant; the hand-written VJP cos(w) is right.
    return tf.stop_gradient(tf.reduce_sum(tf.sin(w))), lambda dy: dy * tf.cos(w)


def test_a_wrong_jvp_is_caught_only_with_forward_mode():
    w = np.array([0.3, -1.2, 2.0])
    fn = lambda v: _sum_of_sines_hidden_from_forward_mode(v[0])  # noqa: E731
    assert gradcheck.check_function(fn, [w]).verdict == "correct"
    report = gradcheck.check_function(fn, [w], modes=("rev", "fwd"))
    assert report.verdict == "wrong", report
    assert report.verdict_from.startswith("forward vs "), report
    assert report.relative_difference <= 1e-7 and report.forward_relative_difference == 1.0, report
    np.testing.assert_allclose([c.forward for c in report.worst], 0.0)
    np.testing.assert_allclose(sorted(c.reverse for c in report.worst), sorted(np.cos(w)), rtol=1e-12)


@tf.custom_gradient
def _square_through_an_op_without_derivative(w):
    # DeepCopy has no registered gradient: the custom VJP covers reverse mode, forward mode fails.
    return tf.reduce_sum(tf.raw_ops.DeepCopy(x=w) ** 2), lambda dy: dy * 2.0 * w


def test_where_forward_mode_is_unsupported_the_report_says_so():
    report = gradcheck.check_function(
        lambda v: _square_through_an_op_without_derivative(v[0]), [np.array([0.3, -1.2])],
        modes=("rev", "fwd"),
    )
    assert report.modes == ("rev",) and report.verdict == "correct", report
    assert report.forward_relative_difference is None, report
    assert re.match(r"forward mode not checked: .*LookupError: .*DeepCopy", report.notes[0])
    assert "note: forward mode not checked" in str(report)


def test_second_order_of_a_model_finds_the_gradient_that_is_not_differentiable():
    x, y = _data()
    report = gradcheck.check_gradients(
        _planted_model("input_gradient_not_differentiable"), x, y, _sparse_xent(), order=2,
        mode="directional",
    )
    # The values of the planted gradient are right: only the second order is wrong.
    assert max(b.relative_difference for b in report.blocks) <= 1e-7, report
    assert report.verdict == "wrong" and report.verdict_from.startswith("second order: "), report
    second = report.second_order
    assert second.mode == "directional", second
    # The lost term is ∂(dJ/dx)/∂W: the derivatives of the layers before `planted` (whose
    # gradients pass through dJ/dx) with respect to planted/kernel.
    worst = second.blocks[0]
    assert worst.input == "planted/kernel" and worst.output.startswith("dJ/d first/"), second
    assert second.disagreeing == ("reverse vs numerical", "forward vs numerical"), second


def test_second_order_of_a_correct_model_is_correct():
    x, y = _data()
    report = gradcheck.check_gradients(_planted_model("none"), x, y, _sparse_xent(), order=2,
                                       mode="sampled")
    assert report.verdict == "correct" and report.second_order.verdict == "correct", report
    assert report.second_order.mode == "directional"  # sampled Hessian entries: directions


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(modes=("fwd",)), "`modes` must be ('rev',) or ('rev', 'fwd'). Received: modes=('fwd',)"),
        (dict(modes="rev"), "`modes` must be ('rev',) or ('rev', 'fwd'). Received: modes='rev'"),
        (dict(order=0), "`order` must be one of (1, 2). Received: order=0"),
        (dict(order=True), "`order` must be one of (1, 2). Received: order=True"),
    ],
)
def test_bad_modes_and_order_raise_value_error(kwargs, message):
    x, y = _data()
    with pytest.raises(ValueError, match=re.escape(message)):
        gradcheck.check_gradients(_he_l2_mlp(), x, y, _sparse_xent(), **kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        gradcheck.check_function(lambda v: tf.reduce_sum(v[0] ** 2), [np.ones(2)], **kwargs)
