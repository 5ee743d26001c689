"""tfnet's optimisers inside real training: model.fit, a custom XLA loop, sparse gradients.

Expected numbers come from the same optimiser run in the plainest setting (eager model.fit on
one device, float32): every other setting must reproduce its weights; sparse updates must
reproduce the dense update of the same gradient.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras
# A sibling module: pytest puts this directory on sys.path (tests/ is not a package).
from optimizer_training_setup import (
    BATCH, EPOCHS, FACTORIES, INITIAL, NAMES, X, Y, assert_weights_close, fit, make_model,
)


@pytest.fixture(scope="module")
def reference():
    """Eager model.fit on one device, per optimiser: the numbers every setting must reproduce."""
    return {name: fit(FACTORIES[name]()) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_fit_trains(name, reference):
    weights, losses = reference[name]
    assert losses[-1] < losses[0]
    assert not np.allclose(weights[0], INITIAL[0])


@pytest.mark.parametrize("name", NAMES)
def test_fit_with_jit_compile_matches_eager_fit(name, reference):
    weights, _ = fit(FACTORIES[name](), jit_compile=True)
    assert_weights_close(weights, reference[name][0])


@pytest.mark.parametrize("name", NAMES)
def test_custom_xla_loop_matches_fit(name, reference):
    model, optimizer = make_model(INITIAL), FACTORIES[name]()
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)

    for _ in range(EPOCHS):
        for start in range(0, len(X), BATCH):
            train_step(X[start:start + BATCH], Y[start:start + BATCH])
    assert_weights_close([w.numpy() for w in model.weights], reference[name][0])


@pytest.mark.parametrize("name", NAMES)
def test_sparse_gradient_gives_the_dense_update(name):
    ids = tf.constant([1, 3, 3, 7])  # row 3 twice: its slices must be summed
    coefficients = tf.constant(np.random.default_rng(2).normal(size=(4, 3)).astype("float32"))
    start = np.random.default_rng(3).normal(size=(10, 3)).astype("float32")
    sparse_table, dense_table = keras.Variable(start), keras.Variable(start)
    sparse_optimizer, dense_optimizer = FACTORIES[name](), FACTORIES[name]()
    for _ in range(3):
        with tf.GradientTape() as tape:
            cost = tf.reduce_sum(tf.gather(sparse_table.value, ids) ** 2 * coefficients)
        gradient = tape.gradient(cost, sparse_table.value)
        assert isinstance(gradient, tf.IndexedSlices)
        sparse_optimizer.apply([gradient], [sparse_table])
        dense_optimizer.apply([tf.convert_to_tensor(gradient)], [dense_table])
    np.testing.assert_allclose(sparse_table.numpy(), dense_table.numpy(), rtol=1e-6, atol=1e-7)
    assert not np.allclose(sparse_table.numpy()[[1, 3, 7]], start[[1, 3, 7]])


