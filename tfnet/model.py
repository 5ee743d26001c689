"""The fully connected classifier: raw inputs → normalisation → hidden layers → logits.

Architecture (METHODS.md §1, §2, §11):

    x (raw, any shape) → flatten → (x − μ) / σ → [Dense(n_l) → activation] × L → Dense(C) = z

The output is the logits z over C classes (two classes for the 2-D sets: softmax over two
logits is logistic regression, METHODS.md §11); the loss is computed from logits with
log-sum-exp, never as log(softmax(z)). μ and σ² are the training split's statistics, carried in a
``keras.layers.Normalization`` inside the model so that exported models take raw inputs.
Hidden weights are He-initialised (``randn × sqrt(2 / n[l−1])``), biases zero.
"""

import keras


def he_normal(seed=None):
    """He initialisation ``randn × sqrt(2 / n_in)``, untruncated as in METHODS.md §2."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_in", distribution="untruncated_normal", seed=seed
    )


def build_model(input_shape, num_classes, hidden_units, mean, variance, activation="relu", seed=0):
    """Builds the classifier.

    Args:
      input_shape: shape of one raw example, e.g. (2,) or (28, 28, 1).
      num_classes: C, the number of logits.
      hidden_units: units of each hidden layer, e.g. (64, 32).
      mean, variance: per-feature training statistics of the flattened input.
      activation: hidden-layer activation. Default "relu".
      seed: seed of the weight initialisation. Default 0.

    Returns:
      A functional ``keras.Model`` from raw inputs to logits.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="features")
    a = keras.layers.Flatten(name="flatten")(inputs)
    a = keras.layers.Normalization(mean=mean, variance=variance, name="normalize")(a)
    for index, units in enumerate(hidden_units, start=1):
        a = keras.layers.Dense(
            units, activation=activation, kernel_initializer=he_normal(seed + index),
            name=f"dense_{index}",
        )(a)
    logits = keras.layers.Dense(
        num_classes, kernel_initializer=he_normal(seed), name="logits"
    )(a)
    return keras.Model(inputs, logits, name="classifier")
