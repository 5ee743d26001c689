"""Shared pieces of the BatchNorm tests: input batches, a gradient probe, and the float64 numpy
equations of docs/methods.md §10 (with Keras' masking rule) that the layer is checked against."""

import numpy as np
import tensorflow as tf


def random_batches(shape, steps, dtype, seed=0):
    """``steps`` batches of N(5, 3²) values: far from Keras' start values, mean 0 variance 1."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape) * 3.0 + 5.0).astype(dtype) for _ in range(steps)]


def input_gamma_beta_gradients(layer, x, upstream, training, mask=None):
    """The layer's output and the gradients of sum(output * upstream) with respect to the
    inputs, γ and β (a weighted sum, so that they are not the trivial gradients of sum(y))."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training, mask=mask)
        loss = tf.reduce_sum(y * upstream)
    return (y, *tape.gradient(loss, [x, layer.gamma, layer.beta]))


def _per_channel_shape(ndim, axis):
    shape = [1] * ndim
    shape[axis] = -1
    return shape


def numpy_moments(z, axis, mask=None):
    """(μ, σ², m) per channel of the values of ``z`` where ``mask`` is true.

    ``mask`` follows Keras: the inputs' shape without the last axis (or broadcastable to it),
    broadcast over the last axis; None selects every value. A channel with m = 0 gets NaN.
    """
    selected = np.ones(z.shape, bool)
    if mask is not None:
        selected = np.broadcast_to(np.asarray(mask, bool)[..., None], z.shape)
    reduce = tuple(i for i in range(z.ndim) if i != axis % z.ndim)
    count = selected.sum(axis=reduce)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(selected, z, 0.0).sum(axis=reduce) / count
        deviation = np.where(selected, z - mean.reshape(_per_channel_shape(z.ndim, axis)), 0.0)
        variance = np.square(deviation).sum(axis=reduce) / count
    return mean, variance, count


def numpy_batch_norm(z, axis, gamma, beta, mean, variance, epsilon):
    """γ (z − μ) / √(σ² + ε) + β per channel of ``axis``."""
    shape = _per_channel_shape(z.ndim, axis)
    mean, variance = mean.reshape(shape), variance.reshape(shape)
    return gamma.reshape(shape) * (z - mean) / np.sqrt(variance + epsilon) + beta.reshape(shape)
