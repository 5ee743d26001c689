"""The one training step: the cost it minimises and the gradient it applies, against numpy.

J = (1/m) Σ_i CE(y_i, z_i) + (λ/2m) Σ_l ‖W[l]‖² (docs/methods.md §3, §11) is computed here
independently in float64 numpy, with its gradient by hand-written backpropagation, for a tiny
ReLU network with L2, and compared with what the real step does inside the real loop: the cost
it logs for step 1, and the update it applies (plain gradient descent, so Δw = −α ∇J), on one
device and on two replicas, where each replica holds half the batch.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfnet import data as data_lib
from tfnet import model as model_lib
from tfnet import optimizers
from tfnet.training import step as step_lib
from tfnet.training.batches import MemoryBatches
from tfnet.training.loop import TrainLoop

M, L2, ALPHA = 16, 0.3, 0.1


def _examples():
    x, y = data_lib.make_embedded("moons", M, seed=4)
    return x, y


def _numpy_cost_and_gradients(weights, x, y, mean, variance, l2=L2):
    """J and dJ/d(each weight) of Normalization → Dense(3) ReLU → Dense(2), float64."""
    w1, b1, w2, b2 = (np.asarray(w, np.float64) for w in weights)
    a0 = (x - mean) / np.maximum(np.sqrt(variance), 1e-7)
    z1 = a0 @ w1 + b1
    a1 = np.maximum(z1, 0.0)
    z2 = a1 @ w2 + b2
    shifted = z2 - z2.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    m = len(y)
    cost = -log_softmax[np.arange(m), y].mean() + l2 / (2 * m) * ((w1**2).sum() + (w2**2).sum())
    dz2 = np.exp(log_softmax)
    dz2[np.arange(m), y] -= 1.0
    dz2 /= m  # dJ/dz = (ŷ − y)/m
    dw2 = a1.T @ dz2 + l2 / m * w2
    dz1 = (dz2 @ w2.T) * (z1 > 0)
    dw1 = a0.T @ dz1 + l2 / m * w1
    return cost, [dw1, dz1.sum(axis=0), dw2, dz2.sum(axis=0)]


def _one_step(strategy):
    x, y = _examples()
    mean, variance = x.mean(axis=0), x.var(axis=0)
    with strategy.scope():
        model = model_lib.build_model((2,), 2, (3,), mean, variance, l2=L2, seed=2)
        optimizer = optimizers.get("gd", ALPHA)
        optimizer.build(model.trainable_variables)
    before = [w.numpy() for w in model.trainable_variables]
    position = tf.Variable(0, dtype=tf.int64)
    batches = MemoryBatches(data_lib.Examples(tf.constant(x), tf.constant(y)), seed=0,
                            batch_size=M, strategy=strategy)
    loop = TrainLoop(step_lib.make_train_step(model, optimizer, strategy), batches, seed=0,
                     position=position, log_every_steps=1, strategy=strategy)
    output = loop(1)
    after = [w.numpy() for w in model.trainable_variables]
    return x, y, mean, variance, before, after, output


@pytest.mark.parametrize("replicas", [1, 2])
def test_the_step_minimises_mean_cross_entropy_plus_l2_and_applies_its_gradient(
        replicas, two_cpu_strategy):
    strategy = two_cpu_strategy if replicas == 2 else tf.distribute.get_strategy()
    x, y, mean, variance, before, after, output = _one_step(strategy)
    cost, gradients = _numpy_cost_and_gradients(before, x, y, mean, variance)
    assert output.steps == 1 and output.logged[0][0] == 1
    # The cost of step 1 is J at the initial weights, the whole batch of M on every replica count.
    np.testing.assert_allclose(output.logged[0][1], cost, rtol=2e-6)
    for w0, w1, g in zip(before, after, gradients, strict=True):
        np.testing.assert_allclose((w0 - w1) / ALPHA, g, rtol=2e-4, atol=2e-6)


def test_the_reference_is_the_formula_with_lambda_over_2m():
    # Guards the reference itself: its L2 term is λ/(2m) Σ‖W‖², not λ/m, and it is not zero.
    x, y = _examples()
    weights = [np.ones((2, 3)), np.zeros(3), np.ones((3, 2)), np.zeros(2)]
    statistics = (x.mean(axis=0), x.var(axis=0))
    with_l2, _ = _numpy_cost_and_gradients(weights, x, y, *statistics)
    without, _ = _numpy_cost_and_gradients(weights, x, y, *statistics, l2=0.0)
    assert with_l2 - without == pytest.approx(L2 / (2 * M) * 12)


def test_evaluation_is_mean_cross_entropy_and_accuracy_in_inference_mode():
    x, y = _examples()
    model = model_lib.build_model((2,), 2, (5,), x.mean(axis=0), x.var(axis=0), keep_prob=(0.5,),
                                  seed=1)
    logits = model(x, training=False).numpy().astype(np.float64)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected_loss = -log_softmax[np.arange(M), y].mean()
    expected_accuracy = np.mean(logits.argmax(axis=1) == y)
    # chunk_size 5 over 16 examples: chunks of 5, 5, 5 and 1 are summed.
    ((loss, accuracy),) = step_lib.make_evaluate(model, chunk_size=5)((tf.constant(x), tf.constant(y)))
    assert float(loss) == pytest.approx(expected_loss, rel=1e-6)
    assert float(accuracy) == expected_accuracy


@pytest.mark.parametrize("name", ["gd", "momentum", "rmsprop", "adam", "keras_adam"])
def test_an_update_with_a_finite_cost_but_a_non_finite_gradient_is_never_applied(name):
    """The guard looks at every gradient, not only at the cost: a weight whose gradient is NaN
    while J is finite leaves every weight and optimiser slot as the last finite step left them
    (tfnet's optimisers masked, Keras' behind a branch), the step count included."""
    spoilt = tf.Variable(False)

    @tf.custom_gradient
    def nan_gradient(x):
        return x, lambda upstream: upstream * tf.where(spoilt, np.float32(np.nan), 1.0)

    class Spoilt(keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 2), initializer="ones")

        def call(self, x):
            return tf.matmul(x, nan_gradient(self.w))

    model = keras.Sequential([keras.Input((3,)), Spoilt()])
    optimizer = optimizers.get(name, 0.1)
    optimizer.build(model.trainable_variables)
    step = tf.function(step_lib.make_train_step(model, optimizer), jit_compile=True)
    x, y = tf.ones((4, 3)), tf.constant([0, 0, 0, 1], tf.int64)
    _, applied = step(lambda replica_id, num_replicas: (x, y))  # a finite step: slots move
    assert applied.numpy() and int(optimizer.iterations.numpy()) == 1
    before = [v.numpy().copy() for v in model.weights + optimizer.variables]
    assert not np.array_equal(before[0], np.ones((3, 2)))  # the weights moved
    spoilt.assign(True)
    cost, applied = step(lambda replica_id, num_replicas: (x, y))
    assert np.isfinite(cost.numpy()) and not applied.numpy()
    for variable, value in zip(model.weights + optimizer.variables, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)


@pytest.mark.parametrize("name", ["gd", "momentum", "rmsprop", "adam"])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_the_masked_update_of_a_finite_step_is_the_branched_update(name, jit_compile, monkeypatch):
    """Multiplying the update's coefficients by f = 1 changes no bit: tfnet's optimisers trained
    by the step with the mask end where the same step with the guard as a branch ends (five
    steps). Compiled by XLA, which fuses the two programs differently, they agree to float32's
    last bits."""

    def trained(masked):
        monkeypatch.setattr(type(optimizers.get(name, 0.1)), "supports_update_mask", masked)
        model = model_lib.build_model((2,), 2, (8,), np.zeros(2), np.ones(2), seed=3)
        optimizer = optimizers.get(name, 0.05)
        optimizer.build(model.trainable_variables)
        x, y = (tf.constant(a) for a in _examples())
        step = step_lib.make_train_step(model, optimizer)
        run = tf.function(lambda: step(lambda replica_id, num_replicas: (x, y)),
                          jit_compile=jit_compile)
        for _ in range(5):
            run()
        return [w.numpy() for w in model.trainable_variables + optimizer.variables]

    for a, b in zip(trained(True), trained(False), strict=True):
        if jit_compile:
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        else:
            np.testing.assert_array_equal(a, b)
