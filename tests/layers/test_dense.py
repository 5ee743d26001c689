"""Dense: course initialisations (docs/methods.md §2) and the (λ/2m)‖W‖² L2 cost (docs/methods.md §3).

What Dense shares with Conv2D (the initialisations' scale, seeds, the L2 cost and its gradient,
its replica rule, argument checks) is tested on both in test_kernel.py; here, what only a
fully connected stack shows. Expected numbers come from the equations written in numpy.
"""

import contextlib
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfnet.layers import Dense


def _pre_activation_variances(initializer, layers=20, width=512, activation="relu"):
    x = tf.constant(np.random.default_rng(0).standard_normal((512, width)), "float32")
    variances = []
    for l in range(layers):
        dense = Dense(width, initializer=initializer, seed=l)
        z = dense(x)
        variances.append(float(tf.math.reduce_variance(z)))
        x = keras.activations.get(activation)(z)
    return np.array(variances)


def test_he_keeps_activation_variance_through_20_relu_layers():
    """He: Var(z[l+1]) = n Var(w) E[relu(z[l])²] = n (2/n) Var(z[l]) / 2 = Var(z[l]).

    random_large instead multiplies the variance by n · 100 / 2 = 25,600 per layer, and Xavier's
    Var(w) = 1/n halves it (the tanh initialisation is too small for ReLU).
    """
    he = _pre_activation_variances("he")
    assert np.all(np.isfinite(he))
    assert np.all((he / he[0] > 0.5) & (he / he[0] < 2.0)), he / he[0]
    large = _pre_activation_variances("random_large")
    assert not np.isfinite(large[-1]) or large[-1] / large[0] > 1e30, large[-1]
    xavier = _pre_activation_variances("xavier")
    assert xavier[-1] / xavier[0] < 1e-3, xavier[-1] / xavier[0]


def test_zeros_never_breaks_symmetry():
    """After SGD steps from zeros, all units of a hidden layer are identical; from He they are not.

    Sigmoid, so the gradients are not all zero (σ(0) = 1/2): the weights do move, in lockstep.
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 5)).astype("float32")
    y = rng.standard_normal((64, 2)).astype("float32")

    def trained_hidden_kernels(initializer):
        keras.utils.set_random_seed(0)
        hidden = [Dense(6, initializer=initializer, activation="sigmoid", seed=i) for i in range(2)]
        model = keras.Sequential([keras.Input((5,)), *hidden, Dense(2, initializer=initializer)])
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
        model.fit(x, y, batch_size=16, epochs=3, verbose=0)
        return [layer.kernel.numpy() for layer in hidden]

    for kernel in trained_hidden_kernels("zeros"):
        # Every unit (column) has the same incoming weights, and they did change.
        np.testing.assert_allclose(kernel, np.repeat(kernel[:, :1], kernel.shape[1], axis=1))
    assert np.abs(trained_hidden_kernels("zeros")[1]).max() > 1e-4
    for kernel in trained_hidden_kernels("he"):
        assert np.abs(kernel - kernel[:, :1]).max() > 1e-2


def _one_fit_step_expected(x, y, kernel, lam, lr):
    """One SGD step on J = mean((x W - y)²) + (λ/2m)‖W‖² (no bias), in float64 numpy."""
    m, k = y.shape
    residual = x @ kernel - y
    grad = 2.0 / (m * k) * x.T @ residual + lam / m * kernel
    return kernel - lr * grad


def _fit_one_step(x, y, lam, lr, strategy=None):
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((x.shape[1],)), Dense(y.shape[1], l2=lam, use_bias=False, seed=0)])
        model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    initial = model.layers[0].kernel.numpy()
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    return initial, model.layers[0].kernel.numpy()


def test_l2_in_model_fit():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 4)).astype("float32")
    y = rng.standard_normal((8, 3)).astype("float32")
    lam, lr = 2.0, 0.1
    initial, updated = _fit_one_step(x, y, lam, lr)
    want = _one_fit_step_expected(x.astype("float64"), y, initial.astype("float64"), lam, lr)
    np.testing.assert_allclose(updated, want, rtol=1e-5, atol=1e-6)
    # Planted contrast: without the L2 term the step is measurably different.
    without = _one_fit_step_expected(x.astype("float64"), y, initial.astype("float64"), 0.0, lr)
    assert np.abs(updated - without).max() > 1e-2


def test_l2_under_distribution_uses_global_batch(two_cpu_strategy):
    """Two replicas of 4 examples each take the same step as one device on all 8."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 4)).astype("float32")
    y = rng.standard_normal((8, 3)).astype("float32")
    lam, lr = 2.0, 0.1
    initial, updated = _fit_one_step(x, y, lam, lr, strategy=two_cpu_strategy)
    want = _one_fit_step_expected(x.astype("float64"), y, initial.astype("float64"), lam, lr)
    np.testing.assert_allclose(updated, want, rtol=1e-5, atol=1e-6)


def test_config_round_trip():
    layer = Dense(7, initializer="xavier", use_bias=False, l2=0.3, activation="tanh", seed=2, name="d")
    config = layer.get_config()
    assert Dense.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, Dense) and restored.get_config() == config
    # The values travelled (a key missing on both sides would pass the lines above).
    travelled = (restored.initializer, restored.l2, restored.seed, restored.use_bias)
    assert travelled == ("xavier", 0.3, 2, False)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"units": 0}, "`units` must be a positive int. Received: units=0"),
        ({"units": 2.5}, "`units` must be a positive int. Received: units=2.5"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Dense(**kwargs)
