"""Tests of tfnet.gradcheck.check_jacobian and of second order on functions (order=2).

Expected numbers are Jacobians and Hessians written out by hand in float64 numpy; the planted bugs
are `tf.custom_gradient`s whose hand-written VJP is wrong (reverse mode), whose forward pass hides
its derivative from forward mode (tf.stop_gradient), or whose gradient is right but not itself
differentiable (second order).
"""

import re

import numpy as np
import pytest
import tensorflow as tf

from tfnet import gradcheck
from tfnet.gradcheck import engine

X = np.array([0.3, -1.2, 0.8])
W = np.array([[0.5, -0.2, 0.1], [0.3, 0.9, -0.4]])


def _smooth(values):
    # y0 = tanh(W x) (2,), y1 = (Σ x³) W (2, 3).
    x, w = values
    return [tf.tanh(tf.linalg.matvec(w, x)), tf.reduce_sum(x**3) * w]


def _smooth_jacobian():
    """∂(y0, y1)/∂(x, W) by hand: an (8, 9) matrix, outputs and inputs flattened in order."""
    z = W @ X
    s = np.sum(X**3)
    jac = np.zeros((8, 9))
    for a in range(2):
        jac[a, :3] = (1 - np.tanh(z[a]) ** 2) * W[a]  # ∂y0_a/∂x
        jac[a, 3 + 3 * a : 6 + 3 * a] = (1 - np.tanh(z[a]) ** 2) * X  # ∂y0_a/∂W_a·
    for b in range(2):
        for c in range(3):
            jac[2 + 3 * b + c, :3] = 3 * X**2 * W[b, c]  # ∂y1_bc/∂x
            jac[2 + 3 * b + c, 3 + 3 * b + c] = s  # ∂y1_bc/∂W_bc
    return jac


def test_correct_vector_function_matches_the_jacobian_by_hand():
    report = gradcheck.check_jacobian(_smooth, [X, W], k_worst=72)
    assert report.verdict == "correct" and report.disagreeing == () and not report.diagnosis, report
    assert [name for name, _ in report.differences] == [
        "reverse vs numerical", "forward vs numerical", "forward vs reverse"
    ]
    assert report.outputs == (("outputs[0]", (2,)), ("outputs[1]", (2, 3)))
    assert len(report.worst) == 72 and len(report.blocks) == 4
    assert (report.evaluations, report.vjps, report.jvps) == (2 + 2 * 9, 8, 9)
    expected = _smooth_jacobian()
    # (first row or column of the tensor in the flattened Jacobian, its shape)
    out_start = {"outputs[0]": (0, (2,)), "outputs[1]": (2, (2, 3))}
    in_start = {"inputs[0]": (0, (3,)), "inputs[1]": (3, (2, 3))}
    for e in report.worst:
        (row, out_shape), (column, in_shape) = out_start[e.output], in_start[e.input]
        exact = expected[row + int(np.ravel_multi_index(e.output_index, out_shape)),
                         column + int(np.ravel_multi_index(e.input_index, in_shape))]
        np.testing.assert_allclose([e.reverse, e.forward], exact, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(e.numerical, exact, rtol=1e-8, atol=1e-9)


@tf.custom_gradient
def _softplus_with_wrong_vjp(x):
    y = tf.math.log1p(tf.exp(x))

    def grad(dy):
        # Planted: 1.2 σ(x_2) where dy σ(x) is right.
        return dy * tf.sigmoid(x) * tf.constant([1.0, 1.0, 1.2], x.dtype)

    return y, grad


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_wrong_custom_gradient_of_a_vector_function_is_found_in_reverse_mode(mode):
    report = gradcheck.check_jacobian(lambda v: _softplus_with_wrong_vjp(v[0]), [X], mode=mode)
    assert report.verdict == "wrong", report
    assert report.disagreeing == ("reverse vs numerical", "forward vs reverse"), report
    assert report.diagnosis.startswith("reverse mode (the VJP) is wrong"), report
    worst = report.worst[0]
    assert (worst.output, worst.input) == ("output", "inputs[0]"), report
    if mode == "full":
        # ∂softplus(x_2)/∂x_2 = σ(x_2); the planted VJP returns 1.2 σ(x_2).
        sigma = 1 / (1 + np.exp(-X[2]))
        assert (worst.output_index, worst.input_index) == ((2,), (2,)), report
        np.testing.assert_allclose([worst.reverse, worst.forward], [1.2 * sigma, sigma], rtol=1e-12)
        np.testing.assert_allclose(worst.numerical, sigma, rtol=1e-8)
    else:
        assert re.fullmatch(r"u\d", worst.output_index) and re.fullmatch(r"v\d", worst.input_index)
        assert (report.evaluations, report.vjps, report.jvps) == (2 + 2 * 4, 4, 4)


@tf.custom_gradient
def _sin_hidden_from_forward_mode(x):
    # The value is computed under tf.stop_gradient, so forward mode, which derives JVPs from the
    # forward ops, sees a constant; the hand-written VJP is right.
    def grad(dy):
        return dy * tf.cos(x)

    return tf.stop_gradient(tf.sin(x)), grad


def test_jvp_disagreeing_with_the_vjp_is_found_in_forward_mode():
    report = gradcheck.check_jacobian(lambda v: _sin_hidden_from_forward_mode(v[0]), [X])
    assert report.verdict == "wrong", report
    assert report.disagreeing == ("forward vs numerical", "forward vs reverse"), report
    assert report.diagnosis.startswith("forward mode (the JVP) is wrong"), report
    by_index = {(e.output_index, e.input_index): e for e in report.worst}
    for i in range(3):
        entry = by_index[((i,), (i,))]
        np.testing.assert_allclose([entry.reverse, entry.forward], [np.cos(X[i]), 0.0], atol=1e-15)
        np.testing.assert_allclose(entry.numerical, np.cos(X[i]), rtol=1e-8)
    # Reverse mode alone cannot see this bug.
    assert gradcheck.check_jacobian(
        lambda v: _sin_hidden_from_forward_mode(v[0]), [X], modes=("rev",)
    ).verdict == "correct"


def test_directional_mode_of_a_correct_function_is_correct():
    report = gradcheck.check_jacobian(_smooth, [X, W], mode="directional", num_directions=3)
    assert report.verdict == "correct", str(report)
    # One block per (output, input), 3 random (u, v) pairs each.
    assert len(report.blocks) == 4 and all(b.checked == 3 for b in report.blocks), report


@tf.custom_gradient
def _cube_with_gradient_not_differentiable(x):
    def grad(dy):
        # Right value 3x², but tf.stop_gradient hides x from a second differentiation.
        return dy * 3.0 * tf.stop_gradient(x) ** 2

    return x**3, grad


def _sum_of_cubes(values):
    return tf.reduce_sum(_cube_with_gradient_not_differentiable(values[0]))


def test_gradient_right_but_not_differentiable_is_caught_by_order_2():
    first = gradcheck.check_function(_sum_of_cubes, [X])
    assert first.verdict == "correct" and first.second_order is None, first
    report = gradcheck.check_function(_sum_of_cubes, [X], order=2)
    assert report.relative_difference <= 1e-7, report  # the first order still right
    assert report.verdict == "wrong" and report.verdict_from.startswith("second order: "), report
    second = report.second_order
    assert second.disagreeing == ("reverse vs numerical", "forward vs numerical"), second
    assert "reverse-over-reverse" in second.checked and "forward-over-reverse" in second.checked
    # The Hessian of Σx³ is diag(6x): the differences of the gradient see it, both autodiff
    # second derivatives are 0.
    diagonal = {e.input_index: e for e in second.worst if e.output_index == e.input_index}
    for i in range(3):
        np.testing.assert_allclose(diagonal[(i,)].numerical, 6 * X[i], rtol=1e-8)
        assert diagonal[(i,)].reverse == diagonal[(i,)].forward == 0.0
    assert "second order:" in str(report)


def _batch_normalised(z, moments):
    # Σ c (z − μ) / √(σ² + ε): a batch-normalised column, weighted.
    c = tf.constant([0.5, -1.0, 2.0, 0.3, 1.5], z.dtype)
    mean, variance = moments(z)
    return tf.reduce_sum(c * (z - mean) / tf.sqrt(variance + 1e-3))


def _moments_by_hand(z):
    mean = tf.reduce_mean(z)
    return mean, tf.reduce_mean(tf.square(z - mean))


def test_order_2_finds_the_stop_gradient_in_tf_nn_moments():
    # tf.nn.moments computes the variance as mean((z − stop_gradient(μ))²): its gradient is right
    # (what stop_gradient drops is 0 at first order) but its second derivatives are not, and
    # Keras' and tfnet's BatchNorm use it. The same moments written without stop_gradient pass.
    z = np.array([0.3, -1.2, 0.8, 2.0, -0.5])
    with_tf = gradcheck.check_function(
        lambda v: _batch_normalised(v[0], lambda x: tf.nn.moments(x, axes=[0])), [z], order=2,
        k_worst=25,
    )
    assert with_tf.relative_difference <= 1e-7, with_tf
    assert with_tf.verdict == "wrong" and with_tf.verdict_from.startswith("second order: "), with_tf
    assert with_tf.second_order.disagreeing == ("reverse vs numerical", "forward vs numerical")
    by_hand = gradcheck.check_function(
        lambda v: _batch_normalised(v[0], _moments_by_hand), [z], order=2
    )
    assert by_hand.verdict == "correct", by_hand
    # The differences of the gradient are the true Hessian: nested tapes through the moments by
    # hand give it independently of the checker.
    x = tf.constant(z)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            f = _batch_normalised(x, _moments_by_hand)
        gradient = inner.gradient(f, x)
    hessian = outer.jacobian(gradient, x).numpy()
    assert len(with_tf.second_order.worst) == 25
    for e in with_tf.second_order.worst:
        np.testing.assert_allclose(
            e.numerical, hessian[e.output_index[0], e.input_index[0]], rtol=1e-6, atol=1e-8
        )


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_check_jacobian_order_2_catches_it_too(mode):
    report = gradcheck.check_jacobian(
        lambda v: _cube_with_gradient_not_differentiable(v[0]), [X], order=2, mode=mode
    )
    assert report.differences[0][1] <= 1e-7, report  # first order right
    assert report.verdict == "wrong" and report.second_order.verdict == "wrong", report
    assert report.second_order.worst[0].output == "wT df/d inputs[0]", report


def _quartic(values):
    (w,) = values
    return tf.reduce_sum(w**4) / 4 + tf.reduce_sum(w[:2] * w[1:])


def test_second_order_of_a_correct_function_matches_the_hessian_by_hand():
    report = gradcheck.check_function(_quartic, [X], order=2, k_worst=9)
    assert report.verdict == "correct", str(report)
    # J = Σw⁴/4 + w0 w1 + w1 w2: H = diag(3w²) + 1 at (0, 1), (1, 0), (1, 2), (2, 1).
    hessian = np.diag(3 * X**2) + np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]])
    assert len(report.second_order.worst) == 9
    for e in report.second_order.worst:
        exact = hessian[e.output_index[0], e.input_index[0]]
        np.testing.assert_allclose([e.reverse, e.forward], exact, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(e.numerical, exact, rtol=1e-8, atol=1e-9)
    vector = gradcheck.check_jacobian(_smooth, [X, W], order=2, mode="directional")
    assert vector.verdict == "correct", vector


def test_kink_in_a_jacobian_is_reported_not_counted():
    # relu at 1e-7, within the step h ≈ 6e-6 of 0: the one-sided differences of that entry are
    # 1 and 0 (their mean 0.5 would make the verdict "wrong").
    x = np.array([1e-7, 0.5, -0.3])
    report = gradcheck.check_jacobian(lambda v: tf.nn.relu(v[0]), [x])
    assert [(k.output_index, k.input_index) for k in report.kinks] == [((0,), (0,))], report
    assert report.verdict == "correct", str(report)


@tf.custom_gradient
def _double_through_an_op_without_derivative(x):
    # DeepCopy has no registered gradient: the custom VJP covers reverse mode, forward mode fails.
    return tf.raw_ops.DeepCopy(x=x) * 2.0, lambda dy: dy * 2.0


def test_where_forward_mode_is_unsupported_the_report_says_so():
    report = gradcheck.check_jacobian(lambda v: _double_through_an_op_without_derivative(v[0]), [X])
    assert report.modes == ("rev",) and report.verdict == "correct", report
    assert re.search(r"forward mode not checked: LookupError: .*DeepCopy", report.notes[0]), report
    assert "note: forward mode not checked" in str(report)
    with pytest.raises(ValueError, match="neither autodiff mode could be computed"):
        gradcheck.check_jacobian(
            lambda v: _double_through_an_op_without_derivative(v[0]), [X], modes=("fwd",)
        )


def test_random_function_is_refused():
    with pytest.raises(gradcheck.NondeterministicCostError, match="not a deterministic"):
        gradcheck.check_jacobian(lambda v: v[0] * tf.random.uniform([3], dtype=tf.float64), [X])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(fn=3), "`fn` must be callable. Received: fn=3"),
        (dict(inputs=[]), "`inputs` must be a non-empty list of variables or arrays. Received: inputs=[]"),
        (dict(inputs=[np.arange(3)]), "`inputs` must be floating-point arrays, tensors or variables. Received: inputs[0] of dtype int64"),
        (dict(fn=lambda v: tf.cast(v[0], tf.int32)), "`fn` must return a floating tensor or a list of them. Received: fn returning ['int32']"),
        (dict(mode="sampled"), "`mode` must be one of ('full', 'directional'). Received: mode='sampled'"),
        (dict(modes=("rev", "bwd")), "`modes` must be a non-empty tuple of distinct modes from ('rev', 'fwd'). Received: modes=('rev', 'bwd')"),
        (dict(modes=()), "`modes` must be a non-empty tuple of distinct modes from ('rev', 'fwd'). Received: modes=()"),
        (dict(order=3), "`order` must be one of (1, 2). Received: order=3"),
        (dict(num_directions=0), "`num_directions` must be an integer >= 1. Received: num_directions=0"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    arguments = {"fn": lambda v: tf.sin(v[0]), "inputs": [X], **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        gradcheck.check_jacobian(arguments.pop("fn"), arguments.pop("inputs"), **arguments)


def test_full_mode_of_a_jacobian_too_large_is_refused(monkeypatch):
    monkeypatch.setattr(engine, "MAX_FULL_ENTRIES", 8)
    message = "`mode` must be 'directional' for a Jacobian of more than 8 entries. Received: mode='full' (3 outputs x 3 inputs)"
    with pytest.raises(ValueError, match=re.escape(message)):
        gradcheck.check_jacobian(lambda v: tf.sin(v[0]), [X])
    # A Hessian too large for full mode is checked along random directions, and says so.
    report = gradcheck.check_function(_quartic, [X], order=2)
    assert report.second_order.mode == "directional" and report.correct, report
