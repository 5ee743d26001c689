"""Shared set-up of the optimiser training tests: the optimisers, the MLP, its data, one fit."""

import contextlib

import numpy as np

import keras
from tfnet.optimizers import Adam, GradientDescent, Momentum, RMSprop

# Non-default options, so that each option's code path runs in every setting.
FACTORIES = {
    "gd": lambda: GradientDescent(0.1),
    "momentum": lambda: Momentum(0.1, beta=0.8, bias_correction=True),
    "rmsprop": lambda: RMSprop(0.01, epsilon=1e-6),
    "adam": lambda: Adam(0.01, epsilon=1e-6),
}
NAMES = list(FACTORIES)
BATCH, EPOCHS = 16, 2
X = np.random.default_rng(1).normal(size=(64, 2)).astype("float32")
Y = (X[:, 0] * X[:, 1] > 0).astype("int64")  # XOR-like quadrants: needs the hidden layer


def make_model(weights=None):
    """The test MLP, with seeded initial weights or ``weights``."""
    seeded = keras.initializers.GlorotUniform(seed=0)
    model = keras.Sequential([keras.Input((2,)),
                              keras.layers.Dense(8, activation="tanh", kernel_initializer=seeded),
                              keras.layers.Dense(2, kernel_initializer=seeded)])
    if weights is not None:
        model.set_weights(weights)
    return model


INITIAL = [w.numpy() for w in make_model().weights]


def fit(optimizer, jit_compile=False, strategy=None):
    """Weights after EPOCHS of model.fit from INITIAL, in a fixed batch order."""
    scope = strategy.scope() if strategy else contextlib.nullcontext()
    with scope:
        model = make_model(INITIAL)
        model.compile(optimizer=optimizer, jit_compile=jit_compile,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(X, Y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
    return [w.numpy() for w in model.weights], history.history["loss"]


def assert_weights_close(actual, expected, rtol=1e-5, atol=1e-6):
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)
