"""Conv2D: Keras' convolution with the course's kernel (docs/methods.md §2, §3).

The initialisations' scale, seeds and the L2 cost are tested with Dense's in test_kernel.py;
here, what is Conv2D's own: the same outputs and gradients as keras.layers.Conv2D holding the
same weights, fan_in with groups, the config, and its argument checks. Expected numbers come
from Keras' built-in layer and from the normal distribution He promises.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfnet.layers import BatchNorm, Conv2D

# Keras' options pass through unchanged: (Conv2D arguments, input shape).
KERAS_CASES = {
    "valid": (dict(filters=4, kernel_size=3), (2, 7, 7, 3)),
    "same_strided": (dict(filters=4, kernel_size=(3, 2), strides=2, padding="same"), (2, 8, 7, 3)),
    "dilated": (dict(filters=5, kernel_size=3, dilation_rate=2, activation="relu"), (2, 9, 9, 2)),
    "groups": (dict(filters=6, kernel_size=3, groups=3, use_bias=False), (2, 6, 6, 3)),
}


@pytest.mark.parametrize("case", KERAS_CASES)
def test_equals_keras_conv2d_with_the_same_weights(case, float64):
    """Outputs and the gradients of sum(u · y) with respect to the inputs and weights."""
    arguments, shape = KERAS_CASES[case]
    ours = Conv2D(**arguments, seed=0, dtype="float64")
    theirs = keras.layers.Conv2D(**arguments, dtype="float64")
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal(shape))
    ours.build(shape)
    theirs.build(shape)
    if ours.use_bias:
        ours.bias.assign(rng.standard_normal(ours.bias.shape))  # a bias that is not all zeros
    theirs.set_weights(ours.get_weights())
    upstream = tf.constant(rng.standard_normal(ours.compute_output_shape(shape)))

    def output_and_gradients(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            cost = tf.reduce_sum(upstream * y)
        return [y, *tape.gradient(cost, [x, *layer.trainable_weights])]

    for got, want in zip(output_and_gradients(ours), output_and_gradients(theirs)):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_fan_in_counts_the_inputs_of_one_group():
    """groups=4 over 64 input channels: each output sees 3·3·16 = 144 inputs, std √(2/144)."""
    layer = Conv2D(256, 3, groups=4, seed=0)
    layer.build((None, 8, 8, 64))
    kernel = layer.kernel.numpy()
    assert kernel.shape == (3, 3, 16, 256)
    # 36,864 draws: the sample std is within ~0.4% of the true one.
    assert abs(kernel.std() / np.sqrt(2 / 144) - 1) < 0.02
    assert abs(kernel.std() / np.sqrt(2 / 576) - 1) > 0.5  # not the fan_in of all channels


def test_conv_batch_norm_relu_stack_on_nhwc_images():
    """Conv2D(use_bias=False) -> BatchNorm -> ReLU: BatchNorm normalises each channel over
    (N, H, W), so in training the pre-activations have mean 0 and variance 1 per channel."""
    x = np.random.default_rng(0).standard_normal((8, 6, 6, 3)).astype("float32") * 4.0 + 2.0
    conv = Conv2D(5, 3, use_bias=False, padding="same", seed=0)
    z = BatchNorm(epsilon=1e-6)(conv(x), training=True).numpy()
    np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), np.zeros(5), atol=1e-5)
    np.testing.assert_allclose(z.var(axis=(0, 1, 2)), np.ones(5), rtol=1e-3)
    assert len(conv.trainable_weights) == 1


def test_config_round_trip(tmp_path):
    layer = Conv2D(7, (3, 2), initializer="xavier", use_bias=False, l2=0.3, seed=2, strides=2,
                   padding="same", activation="tanh", name="c")
    config = layer.get_config()
    assert Conv2D.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, Conv2D) and restored.get_config() == config
    # A .keras file holds the trained kernel and the L2 setting.
    model = keras.Sequential([keras.Input((6, 6, 2)), layer])
    path = str(tmp_path / "conv.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 2)).astype("float32")
    np.testing.assert_array_equal(reloaded(x).numpy(), model(x).numpy())
    assert reloaded.layers[0].l2 == 0.3 and len(reloaded.losses) == 1


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"filters": 0}, "`filters` must be a positive int. Received: filters=0"),
        ({"filters": 2.5}, "`filters` must be a positive int. Received: filters=2.5"),
        (
            {"filters": 3, "kernel_initializer": "he_normal"},
            "`kernel_initializer` is not an argument of tfnet.layers.Conv2D: use `initializer`. "
            "Received: kernel_initializer='he_normal'",
        ),
        (
            {"filters": 3, "kernel_regularizer": "l2"},
            "`kernel_regularizer` is not an argument of tfnet.layers.Conv2D: use `l2`. "
            "Received: kernel_regularizer='l2'",
        ),
        # Keras' own checks, one line each (Keras prints a set: either order).
        ({"filters": 3, "padding": "full"}, re.compile(
            r"The `padding` argument must be a list/tuple or one of \{'(valid', 'same|same', "
            r"'valid)'\}\. Received: full")),
        ({"filters": 4, "groups": 3}, "The number of filters must be evenly divisible by the "
                                      "number of groups. Received: groups=3, filters=4."),
    ],
)
def test_invalid_arguments(kwargs, message):
    pattern = message if isinstance(message, re.Pattern) else re.escape(message)
    with pytest.raises(ValueError, match=pattern) as error:
        Conv2D(kernel_size=3, **kwargs)
    assert "\n" not in str(error.value)
