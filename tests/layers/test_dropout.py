"""InvertedDropout against the equations of docs/methods.md §3 and their sampling statistics."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfnet.layers import InvertedDropout


@pytest.mark.parametrize("keep_prob", [0.5, 0.8, 0.95])
def test_training_keeps_mean_within_sampling_error(keep_prob):
    """E[a d / keep_prob] = a: the mean moves only by sampling noise.

    With a ~ U(0, 2) (so E[a²] = 4/3) the output has variance 4/3 / keep_prob - 1 per element;
    the sample mean of N = 200,000 elements is within 4 standard errors of the input's mean.
    """
    a = np.random.default_rng(0).uniform(0.0, 2.0, (400, 500)).astype("float32")
    out = InvertedDropout(keep_prob, seed=1)(a, training=True).numpy()
    standard_error = np.sqrt((4.0 / 3.0 / keep_prob - 1.0) / a.size)
    assert abs(out.mean() - a.mean()) < 4 * standard_error
    kept = out != 0
    # The kept fraction is keep_prob (binomial standard error), and kept units are a / keep_prob.
    assert abs(kept.mean() - keep_prob) < 4 * np.sqrt(keep_prob * (1 - keep_prob) / a.size)
    np.testing.assert_allclose(out[kept], a[kept] / keep_prob, rtol=1e-6)


def test_identity_in_inference():
    a = np.random.default_rng(0).standard_normal((8, 16)).astype("float32")
    layer = InvertedDropout(0.5, seed=0)
    np.testing.assert_array_equal(layer(a, training=False).numpy(), a)
    np.testing.assert_array_equal(layer(a).numpy(), a)  # training=None is inference
    model = keras.Sequential([keras.Input((16,)), layer])
    np.testing.assert_array_equal(model.predict(a, verbose=0), a)


def test_keep_prob_one_is_identity_in_training():
    a = np.random.default_rng(0).standard_normal((8, 16)).astype("float32")
    np.testing.assert_array_equal(InvertedDropout(1.0)(a, training=True).numpy(), a)


def test_seeded_masks_are_reproducible_and_fresh_each_call():
    a = np.ones((32, 32), "float32")
    first, second = InvertedDropout(0.5, seed=7), InvertedDropout(0.5, seed=7)
    masks_first = [first(a, training=True).numpy() for _ in range(2)]
    masks_second = [second(a, training=True).numpy() for _ in range(2)]
    np.testing.assert_array_equal(masks_first[0], masks_second[0])
    np.testing.assert_array_equal(masks_first[1], masks_second[1])
    assert not np.array_equal(masks_first[0], masks_first[1])
    other = InvertedDropout(0.5, seed=8)(a, training=True).numpy()
    assert not np.array_equal(masks_first[0], other)


def test_fresh_mask_inside_tf_function():
    layer = InvertedDropout(0.5, seed=3)
    step = tf.function(lambda a: layer(a, training=True))
    a = tf.ones((16, 16))
    assert not np.array_equal(step(a).numpy(), step(a).numpy())


def test_float64_scaling_is_exact(float64):
    a = np.full((4, 4), 3.0)
    out = InvertedDropout(0.3, seed=0, dtype="float64")(a, training=True).numpy()
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out[out != 0], 3.0 / 0.3)


def test_config_round_trip():
    layer = InvertedDropout(0.7, seed=5, name="drop")
    config = layer.get_config()
    assert InvertedDropout.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, InvertedDropout) and restored.keep_prob == 0.7


@pytest.mark.parametrize("keep_prob", [0.0, -0.5, 1.5])
def test_invalid_keep_prob(keep_prob):
    message = f"`keep_prob` must be in (0, 1]. Received: keep_prob={keep_prob}"
    with pytest.raises(ValueError, match=re.escape(message)):
        InvertedDropout(keep_prob)
