"""The course's kernel initialisations (docs/methods.md §2) and (λ/2m)‖K‖² L2 cost (§3), on
every layer that shares them (`tfnet.layers.kernel`): Dense and Conv2D.

Expected numbers come from the equations written in numpy (float64 where exactness matters) and
from the statistics of the normal distributions the initialisations promise.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfnet.layers import Conv2D, Dense

# Per layer: a factory taking the course arguments, the input shape of one example, and a large
# layer with fan_in = 400 inputs per unit (Dense: n[l-1] = 400; Conv2D: 5·5·16) and 500 units
# or 128 filters (200,000 or 51,200 draws) with the input shape it is built on.
LAYERS = {
    "dense": (lambda **kw: Dense(3, **kw), (4,), lambda **kw: Dense(500, **kw), (400,)),
    "conv2d": (lambda **kw: Conv2D(3, 3, **kw), (6, 6, 2),
               lambda **kw: Conv2D(128, 5, **kw), (9, 9, 16)),
}


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("initializer,std",
                         [("he", np.sqrt(2 / 400)), ("xavier", np.sqrt(1 / 400)),
                          ("random_large", 10.0)])
def test_initializer_scale(layer, initializer, std):
    _, _, make_large, input_shape = LAYERS[layer]
    large = make_large(initializer=initializer, seed=1)
    large.build((None, *input_shape))
    kernel = large.kernel.numpy()
    # 51,200 draws or more: the sample std is within ~0.3% of the true one.
    assert abs(kernel.std() / std - 1) < 0.02
    assert abs(kernel.mean()) < 0.02 * std
    # Untruncated normal: draws beyond 2 std exist (Keras' HeNormal truncates at 2 std); about
    # 0.27% of them lie beyond 3 std.
    assert np.abs(kernel).max() > 3 * std
    np.testing.assert_array_equal(large.bias.numpy(), np.zeros(large.bias.shape))


@pytest.mark.parametrize("layer", LAYERS)
def test_zeros_initializer_and_no_bias(layer):
    make, input_shape, _, _ = LAYERS[layer]
    zeros = make(initializer="zeros", use_bias=False)
    zeros.build((None, *input_shape))
    np.testing.assert_array_equal(zeros.kernel.numpy(), np.zeros(zeros.kernel.shape))
    assert zeros.bias is None and len(zeros.trainable_weights) == 1


@pytest.mark.parametrize("layer", LAYERS)
def test_seed_makes_initialisation_reproducible(layer):
    make, input_shape, _, _ = LAYERS[layer]
    first, second, other = make(seed=3), make(seed=3), make(seed=4)
    for built in (first, second, other):
        built.build((None, *input_shape))
    np.testing.assert_array_equal(first.kernel.numpy(), second.kernel.numpy())
    assert not np.array_equal(first.kernel.numpy(), other.kernel.numpy())


@pytest.mark.parametrize("layer", LAYERS)
def test_l2_cost_and_gradient_in_custom_loop(layer, float64):
    """sum(model.losses) in a tf.function = (λ/2m)‖K‖²; its gradient = (λ/m) K; b unregularised."""
    make, input_shape, _, _ = LAYERS[layer]
    lam, m = 0.7, 10
    model = keras.Sequential(
        [keras.Input(input_shape), make(l2=lam, dtype="float64"), make(l2=lam, dtype="float64")])
    x = tf.constant(np.random.default_rng(0).standard_normal((m, *input_shape)))

    @tf.function
    def l2_cost_and_gradients(x):
        with tf.GradientTape() as tape:
            model(x, training=True)
            cost = tf.add_n(model.losses)
        return cost, tape.gradient(cost, model.trainable_variables)

    cost, gradients = l2_cost_and_gradients(x)
    kernels = [built.kernel.numpy() for built in model.layers]
    want = sum(lam / (2 * m) * np.sum(k**2) for k in kernels)
    np.testing.assert_allclose(cost.numpy(), want, rtol=1e-12)
    assert len(model.losses) == 2
    dK1, db1, dK2, db2 = gradients
    np.testing.assert_allclose(dK1.numpy(), lam / m * kernels[0], rtol=1e-12)
    np.testing.assert_allclose(dK2.numpy(), lam / m * kernels[1], rtol=1e-12)
    assert db1 is None and db2 is None  # the L2 cost does not involve the biases
    # The cost follows the batch size of each call.
    cost_half, _ = l2_cost_and_gradients(x[:5])
    np.testing.assert_allclose(cost_half.numpy(), 2 * want, rtol=1e-12)
    # The method the training step calls gives the same number for a given m.
    np.testing.assert_allclose(sum(float(b.l2_cost(m)) for b in model.layers), want, rtol=1e-12)


@pytest.mark.parametrize("layer", LAYERS)
def test_l2_cost_inside_strategy_run_counts_every_replica(layer, two_cpu_strategy):
    """Inside strategy.run each replica holds 4 of the 8 examples: m = 4 × 2 replicas."""
    make, input_shape, _, _ = LAYERS[layer]
    lam = 0.7
    with two_cpu_strategy.scope():
        regularised = make(l2=lam, seed=0)
        regularised.build((None, *input_shape))

    def replica_cost(x):
        regularised(x, training=True)
        return tf.add_n(regularised.losses)

    x = tf.ones((4, *input_shape))
    costs = two_cpu_strategy.experimental_local_results(
        tf.function(lambda: two_cpu_strategy.run(replica_cost, (x,)))())
    kernel = regularised.kernel.numpy().astype(np.float64)
    np.testing.assert_allclose([float(c) for c in costs], [lam / (2 * 8) * np.sum(kernel**2)] * 2,
                               rtol=1e-6)


@pytest.mark.parametrize("layer", LAYERS)
def test_l2_cost_in_cross_replica_context_uses_the_whole_batch(layer, two_cpu_strategy):
    """Inside strategy.scope() but outside strategy.run, one call sees the whole batch: m = 8
    (R = 1, the replica context's count), not 8 × the strategy's 2 replicas."""
    make, input_shape, _, _ = LAYERS[layer]
    lam, m = 0.7, 8
    with two_cpu_strategy.scope():
        model = keras.Sequential([keras.Input(input_shape), make(l2=lam, seed=0)])
        model(tf.ones((m, *input_shape)), training=True)
        (cost,) = model.losses
    kernel = model.layers[0].kernel.numpy().astype(np.float64)
    np.testing.assert_allclose(float(cost), lam / (2 * m) * np.sum(kernel**2), rtol=1e-6)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"l2": -1.0}, "`l2` must be >= 0. Received: l2=-1.0"),
        ({"l2": "0.1"}, "`l2` must be >= 0. Received: l2='0.1'"),
        (
            {"initializer": "glorot"},
            "`initializer` must be one of ('he', 'xavier', 'zeros', 'random_large'). "
            "Received: initializer='glorot'",
        ),
    ],
)
def test_invalid_kernel_arguments(layer, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        LAYERS[layer][0](**kwargs)
