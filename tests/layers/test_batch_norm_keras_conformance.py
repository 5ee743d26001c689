"""Keras 3.15's own BatchNormalization tests, ported and run on BatchNorm beside Keras' layer.

The cases come from keras/src/layers/normalization/batch_normalization_test.py (Keras'
numbers kept); each runs on ours and on `keras.layers.BatchNormalization` with the same
momentum and ε. Masking is checked further against the float64 numpy equations of
docs/methods.md §10 with Keras' masking rule (`batch_norm_reference.numpy_moments`). Where
the two layers differ by design (a channel without unmasked values) the test pins both.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src import testing

from tfnet.layers import BatchNorm

# A sibling module: pytest puts this directory on sys.path (tests/ is not a package).
from batch_norm_reference import (
    input_gamma_beta_gradients, numpy_batch_norm, numpy_moments, random_batches,
)

LAYERS = {"ours": BatchNorm, "keras": keras.layers.BatchNormalization}


# ---- test_bn_basics: Keras' layer harness -----------------------------------------------------

@pytest.mark.parametrize("bias_correction", [False, True])
@pytest.mark.parametrize("shape", [(2, 3), (2, 4, 4, 3)], ids=["vector", "image"])
def test_keras_layer_harness(shape, bias_correction):
    # Builds, calls in training, trains in a model, round-trips the config, runs under a mixed
    # precision policy, and checks that the layer declares masking support.
    testing.TestCase().run_layer_test(
        BatchNorm,
        init_kwargs={"bias_correction": bias_correction},
        call_kwargs={"training": True},
        input_shape=shape,
        expected_output_shape=shape,
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=3 if bias_correction else 2,
        expected_num_seed_generators=0,
        expected_num_losses=0,
        supports_masking=True,
    )


# ---- test_correctness, its masking part included ----------------------------------------------

@pytest.mark.parametrize("side", LAYERS)
@pytest.mark.parametrize("shape", [(5, 2, 3), (5, 3, 3, 2)], ids=["3d", "4d"])
@pytest.mark.parametrize("axis", [-1, 1])
def test_correctness(axis, shape, side):
    layer = LAYERS[side](axis=axis, momentum=0)
    x = np.random.default_rng(0).normal(loc=5.0, scale=10.0, size=shape)
    out = x
    for _ in range(3):
        out = layer(out, training=True)
    per_channel = [1] * len(shape)
    per_channel[axis] = shape[axis]
    out = (out.numpy() - layer.beta.numpy().reshape(per_channel)) / layer.gamma.numpy().reshape(
        per_channel)
    reduce = tuple(i for i in range(len(shape)) if i != axis % len(shape))
    np.testing.assert_allclose(out.mean(axis=reduce), 0.0, atol=1e-3)
    np.testing.assert_allclose(out.std(axis=reduce), 1.0, atol=1e-3)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.0, atol=1e-3)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 1.0, atol=1e-3)

    # Momentum 0: inference after a training call on x is that call's normalisation.
    assert not np.allclose(layer(x, training=False), layer(x, training=True), atol=1e-6)
    training = layer(x, training=True).numpy()
    np.testing.assert_allclose(layer(x, training=False).numpy(), training, rtol=1e-5, atol=1e-5)

    # A mask changes nothing in inference, and changes the training statistics.
    x[:, 1, ...] = 0.0
    masked = keras.layers.Masking()(x)
    np.testing.assert_array_equal(layer(masked, training=False).numpy(),
                                  layer(x, training=False).numpy())
    unmasked = layer(x, training=False).numpy()
    masked_training = layer(masked, training=True).numpy()
    if side == "ours" and axis == 1:
        # Keras' rule makes the mask's last axis the channel axis here: channel 1 has no
        # unmasked value, so ours normalises it with its running estimates, as inference does,
        # and the zeroing did not touch the other channels: the output is the inference one.
        # (Keras takes mean 0 and variance 0 for channel 1, so its output differs.)
        np.testing.assert_allclose(masked_training, unmasked, rtol=1e-5, atol=1e-5)
    else:
        assert not np.allclose(masked_training, unmasked, atol=1e-3)


# ---- test_input_fully_masked ------------------------------------------------------------------

@pytest.mark.parametrize("synchronized", [False, True])
@pytest.mark.parametrize("side", LAYERS)
def test_input_fully_masked(side, synchronized):
    # Keras' case: zeros, every example masked, training: the output is 0, not NaN.
    layer = LAYERS[side](synchronized=synchronized)
    y = layer(np.zeros((4, 5)), mask=np.zeros((4,), "float32"), training=True)
    np.testing.assert_array_equal(y.numpy(), np.zeros((4, 5)))


@pytest.mark.parametrize("bias_correction", [False, True])
def test_fully_masked_batch_leaves_the_running_estimates_and_counts_the_step(bias_correction):
    """With no unmasked value the running estimates stand in for the batch statistics: the
    estimates inference uses stay where they were, outputs are the inference outputs, and
    `step` counts the call. Keras instead takes mean 0 and variance 0 (pinned below)."""
    x = random_batches((6, 4, 3), 2, "float32")
    ours = BatchNorm(momentum=0.8, bias_correction=bias_correction)
    theirs = keras.layers.BatchNormalization(momentum=0.8)
    for layer in (ours, theirs):
        layer(x[0], training=True)
    inference = ours(x[1], training=False).numpy()
    masked_out = np.zeros((6, 4))
    np.testing.assert_allclose(ours(x[1], mask=masked_out, training=True).numpy(), inference,
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours(x[1], training=False).numpy(), inference, rtol=1e-6, atol=1e-6)
    if bias_correction:
        assert int(ours.step.numpy()) == 2

    # Keras: both running averages decay towards 0, and the output is z / √ε.
    moving_mean, moving_variance = theirs.moving_mean.numpy(), theirs.moving_variance.numpy()
    y = theirs(x[1], mask=masked_out, training=True).numpy()
    np.testing.assert_allclose(theirs.moving_mean.numpy(), 0.8 * moving_mean, rtol=1e-6)
    np.testing.assert_allclose(theirs.moving_variance.numpy(), 0.8 * moving_variance, rtol=1e-6)
    np.testing.assert_allclose(y, x[1] / np.sqrt(1e-3), rtol=1e-5)


def test_fully_masked_first_batch_keeps_the_untrained_estimates():
    """Before any step the bias-corrected estimates are mean 0 and variance 1; a fully masked
    first batch leaves them so (the corrected update of a 0-sample batch is the identity)."""
    x = random_batches((6, 3), 1, "float32")[0]
    layer = BatchNorm(momentum=0.9, bias_correction=True)
    y = layer(x, mask=np.zeros(6), training=True).numpy()
    np.testing.assert_allclose(y, x / np.sqrt(1.0 + 1e-3), rtol=1e-6)
    np.testing.assert_allclose(layer(x, training=False).numpy(), y, rtol=1e-6)
    assert int(layer.step.numpy()) == 1


# ---- test_bachnorm_ignore_masked_values -------------------------------------------------------

@pytest.mark.parametrize("run_eagerly", [True, False], ids=["eager", "graph"])
@pytest.mark.parametrize("mask_value", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("side", LAYERS)
def test_fit_ignores_masked_values(side, mask_value, run_eagerly):
    padded = np.array([[[1, 5], [2, 5], [mask_value] * 2, [mask_value] * 2]] * 10, "float32")
    inputs = keras.Input((None, 2))
    masked = keras.layers.Masking(mask_value=mask_value)(inputs)
    model = keras.Model(inputs, LAYERS[side](momentum=0.0)(masked))
    model.compile("rmsprop", loss="mse", run_eagerly=run_eagerly)
    model.fit(padded, padded, batch_size=10, epochs=5, verbose=0)
    # The unmasked steps only: channel 0 is {1, 2}, channel 1 is {5, 5}.
    np.testing.assert_allclose(model.layers[2].moving_mean.numpy(), [1.5, 5.0], rtol=1e-6)
    np.testing.assert_allclose(model.layers[2].moving_variance.numpy(), [0.25, 0.0], atol=1e-6)


# ---- test_masked_broadcast_normalization ------------------------------------------------------

@pytest.mark.parametrize("side", LAYERS)
def test_masked_broadcast_normalization(side):
    layer = LAYERS[side](axis=-1, momentum=0.0, epsilon=1e-3)
    y = layer(np.ones((1, 2, 3, 4)), training=True, mask=np.ones((1, 2, 1))).numpy()
    np.testing.assert_allclose(y, np.zeros_like(y), atol=1e-6)
    np.testing.assert_allclose(layer.moving_mean.numpy(), np.ones(4), atol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), np.zeros(4), atol=1e-6)


# ---- beyond Keras' cases: masked statistics against numpy and Keras ----------------------------

# (input shape, mask shape, axis): Masking's (N, T) mask of (N, T, C) steps; an NHWC image
# masked per pixel and per row (broadcast over W and C); Keras' rule with the channel axis
# first, where the mask's last axis is the channel axis and m differs per channel.
MASK_CASES = {
    "steps": ((6, 5, 3), (6, 5), -1),
    "pixels": ((3, 4, 4, 2), (3, 4, 4), -1),
    "rows_broadcast": ((3, 4, 4, 2), (3, 4, 1), -1),
    "channels_first": ((6, 3, 5), (6, 3), 1),
}


def _mask(shape, seed):
    """A random mask with every channel keeping some values (m > 0)."""
    mask = np.random.default_rng(seed).uniform(size=shape) < 0.6
    mask[0] = True
    return mask


@pytest.mark.parametrize("bias_correction", [False, True])
@pytest.mark.parametrize("case", MASK_CASES)
def test_masked_statistics_match_numpy_equations(case, bias_correction, float64):
    """Outputs and running averages over 4 masked steps equal docs/methods.md §10 with the
    weighted μ and σ² in float64 numpy, both modes; `step` counts every call."""
    shape, mask_shape, axis = MASK_CASES[case]
    momentum, epsilon = 0.7, 1e-3
    layer = BatchNorm(axis=axis, momentum=momentum, epsilon=epsilon,
                      bias_correction=bias_correction, dtype="float64")
    layer.build(shape)
    channels = shape[axis]
    gamma, beta = np.linspace(0.5, 2.0, channels), np.linspace(-1.0, 1.0, channels)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    moving_mean = np.zeros(channels)
    moving_variance = np.zeros(channels) if bias_correction else np.ones(channels)
    for t, z in enumerate(random_batches(shape, 4, "float64"), start=1):
        mask = _mask(mask_shape, seed=t)
        mu, sigma2, _ = numpy_moments(z, axis, mask)
        want = numpy_batch_norm(z, axis, gamma, beta, mu, sigma2, epsilon)
        got = layer(z, training=True, mask=mask).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        moving_mean = momentum * moving_mean + (1 - momentum) * mu
        moving_variance = momentum * moving_variance + (1 - momentum) * sigma2
        correction = 1 - momentum**t if bias_correction else 1.0
        want = numpy_batch_norm(z, axis, gamma, beta, moving_mean / correction,
                                moving_variance / correction, epsilon)
        # In inference the mask changes nothing.
        np.testing.assert_allclose(layer(z, training=False, mask=mask).numpy(), want, rtol=1e-12,
                                   atol=1e-12)
    # Planted contrast: the unmasked statistics of the last batch are far from the masked ones.
    assert np.abs(numpy_moments(z, axis)[0] - mu).max() > 0.1
    if bias_correction:
        assert int(layer.step.numpy()) == 4


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", MASK_CASES)
def test_masked_matches_keras_outputs_running_averages_and_gradients(case, dtype):
    """Side by side with Keras' layer over 10 masked steps: outputs, gradients with respect to
    the inputs, γ and β (training and inference), and the running averages.

    Keras divides the masked sums by m + 1e-7, ours by m: a relative difference of about
    1e-7 / m, below float32's resolution but not float64's, hence float64's tolerance.
    """
    shape, mask_shape, axis = MASK_CASES[case]
    tolerance = {"float32": 1e-5, "float64": 1e-7}[dtype]
    ours = BatchNorm(axis=axis, momentum=0.9, dtype=dtype)
    theirs = keras.layers.BatchNormalization(axis=axis, momentum=0.9, dtype=dtype)
    upstream = tf.constant(np.random.default_rng(1).standard_normal(shape).astype(dtype))
    for layer in (ours, theirs):
        layer.build(shape)
        layer.gamma.assign(np.linspace(0.5, 2.0, shape[axis]).astype(dtype))
        layer.beta.assign(np.linspace(-1.0, 1.0, shape[axis]).astype(dtype))
    for step, x in enumerate(random_batches(shape, 10, dtype), start=1):
        mask = tf.constant(_mask(mask_shape, seed=step))
        for training in (True, False) if step % 5 == 0 else (True,):
            got = input_gamma_beta_gradients(ours, x, upstream, training, mask)
            want = input_gamma_beta_gradients(theirs, x, upstream, training, mask)
            for g, w in zip(got, want):
                np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(ours.moving_mean.numpy(), theirs.moving_mean.numpy(), rtol=tolerance)
    np.testing.assert_allclose(ours.moving_variance.numpy(), theirs.moving_variance.numpy(),
                               rtol=tolerance)


def test_embedding_mask_zero_padding_is_left_out_and_the_mask_passed_on():
    """Embedding(mask_zero=True) -> BatchNorm -> GlobalAveragePooling1D, ours and Keras':
    padded tokens (id 0) enter neither the statistics nor the pooled average downstream."""
    tokens = np.array([[3, 1, 4, 0, 0], [1, 5, 9, 2, 6], [5, 3, 0, 0, 0], [5, 8, 9, 7, 0]])
    embedding = np.random.default_rng(0).standard_normal((10, 3)).astype("float32") * 2.0 + 1.0

    def model(norm):
        inputs = keras.Input((5,), dtype="int32")
        z = keras.layers.Embedding(10, 3, mask_zero=True, weights=[embedding])(inputs)
        return keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(norm(z)))

    ours, theirs = model(BatchNorm(momentum=0.5)), model(keras.layers.BatchNormalization(momentum=0.5))
    got, want = ours(tokens, training=True).numpy(), theirs(tokens, training=True).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    z = embedding[tokens].astype("float64")
    mu, sigma2, count = numpy_moments(z, -1, tokens != 0)
    assert count.tolist() == [14] * 3  # the 14 real tokens of 20
    np.testing.assert_allclose(ours.layers[2].moving_mean.numpy(), 0.5 * mu, rtol=1e-5)
    np.testing.assert_allclose(ours.layers[2].moving_variance.numpy(), 0.5 + 0.5 * sigma2,
                               rtol=1e-5)
    # The pooled output averages the real tokens only: the mask reached the pooling layer.
    normalised = numpy_batch_norm(z, -1, np.ones(3), np.zeros(3), mu, sigma2, 1e-3)
    real = (tokens != 0)[..., None]
    np.testing.assert_allclose(got, (normalised * real).sum(1) / real.sum(1), rtol=1e-5,
                               atol=1e-5)


def test_padding_holding_nan_stays_out_of_the_statistics():
    """Masked values are selected out, not multiplied by 0: NaN padding leaves the real values'
    outputs and the running averages as they are with clean padding (a NaN in the running
    averages would spoil every later inference). The padded outputs themselves are NaN, as in
    Keras, and so is any gradient that flows through them."""
    shape, mask = (6, 5, 3), _mask((6, 5), seed=0)
    x = random_batches(shape, 1, "float32")[0]
    poisoned = np.where(mask[..., None], x, np.nan).astype("float32")
    clean, dirty = BatchNorm(momentum=0.5), BatchNorm(momentum=0.5)
    y = clean(x, training=True, mask=mask).numpy()
    y_nan = dirty(poisoned, training=True, mask=mask).numpy()
    real = np.broadcast_to(mask[..., None], shape)
    np.testing.assert_allclose(y_nan[real], y[real], rtol=1e-6)
    np.testing.assert_allclose(dirty.moving_mean.numpy(), clean.moving_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(dirty.moving_variance.numpy(), clean.moving_variance.numpy(),
                               rtol=1e-6)


def test_masked_variance_has_the_hessian_of_the_written_out_formula(float64):
    """Second derivatives of sum(u · y) with respect to the inputs equal those of the literal
    weighted formula, μ = Σwz/m, σ² = Σw(z − μ)²/m, with no stop_gradient anywhere."""
    shape, mask = (5, 2), np.array([1, 1, 0, 1, 0], bool)
    x = tf.constant(random_batches(shape, 1, "float64")[0])
    u = tf.constant(np.random.default_rng(3).standard_normal(shape))
    w = tf.constant(mask[:, None] * np.ones(shape))
    layer = BatchNorm(momentum=0.5, dtype="float64")

    def literal(z):
        m = tf.reduce_sum(w, axis=0)
        mean = tf.reduce_sum(w * z, axis=0) / m
        variance = tf.reduce_sum(w * tf.square(z - mean), axis=0) / m
        return (z - mean) / tf.sqrt(variance + 1e-3)

    def hessian(function):
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                cost = tf.reduce_sum(u * function(x))
            gradient = inner.gradient(cost, x)
        return outer.jacobian(gradient, x).numpy()

    want = hessian(literal)
    got = hessian(lambda z: layer(z, training=True, mask=mask))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    assert np.abs(want).max() > 1e-2  # a real second-order term, not zero against zero


@pytest.mark.parametrize("mask_shape", [(4, 5, 1), (4,), (4, 3)])
def test_mask_of_the_wrong_shape_is_one_clear_error(mask_shape):
    x = np.zeros((4, 5, 3), "float32")
    message = (
        "`mask` must have the inputs' shape without their last axis, or a shape that broadcasts "
        f"to it. Received: mask.shape={mask_shape}, inputs.shape=(4, 5, 3)"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        BatchNorm()(x, training=True, mask=np.ones(mask_shape, bool))
