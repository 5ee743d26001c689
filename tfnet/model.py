"""The fully connected classifier: raw inputs → normalisation → hidden layers → logits.

Architecture (docs/methods.md §1, §2, §3, §10, §11):

    x (raw) → flatten → (x − μ)/σ → [Dense(n_l) → (BatchNorm) → activation → (InvertedDropout)] × L
            → Dense(C) = z

The output is the logits z over C classes (two for the 2-D sets: softmax over two logits is
logistic regression, docs/methods.md §11); the loss is computed from logits with log-sum-exp, never
as log(softmax(z)). μ and σ² are the training split's statistics, carried in a
``keras.layers.Normalization`` inside the model so that exported models take raw inputs. With
BatchNorm the hidden Dense layers have no bias (β replaces it). L2 adds ``(λ/2m) Σ‖W‖²`` over
every kernel, output layer included, to ``model.losses``; ``l2_cost(model, m)`` computes the same
sum from the kernels alone.
"""

import keras
import tensorflow as tf

from tfnet import layers


def build_model(input_shape, num_classes, hidden_units, mean, variance, activation="relu",
                initializer="he", batch_norm=False, bn_momentum=0.99, bn_bias_correction=False,
                bn_synchronized=True, keep_prob=(1.0,), l2=0.0, seed=0):
    """Builds the classifier.

    Args:
      input_shape: shape of one raw example, e.g. (2,) or (28, 28, 1).
      num_classes: C, the number of logits.
      hidden_units: units of each hidden layer, e.g. (64, 32).
      mean, variance: per-feature training statistics of the flattened input.
      activation: hidden-layer activation. Default "relu".
      initializer: "he", "xavier", "zeros" or "random_large" (docs/methods.md §2). Default "he".
      batch_norm: a ``BatchNorm`` after each hidden Dense, before the activation. Default False.
      bn_momentum: the running averages' momentum. Default 0.99.
      bn_bias_correction: divide the running averages by 1 − momentum^t. Default False.
      bn_synchronized: all-reduce batch statistics across replicas. Default True.
      keep_prob: inverted-dropout keep probability after each hidden layer: one value for all,
        or one per hidden layer; 1.0 adds no dropout layer. Default (1.0,).
      l2: λ of the L2 cost. Default 0.0.
      seed: seed of the weight initialisation and the dropout masks. Default 0.

    Returns:
      A functional ``keras.Model`` from raw inputs to logits.
    """
    keep_probs = tuple(keep_prob) if len(keep_prob) > 1 else tuple(keep_prob) * len(hidden_units)
    if len(keep_probs) != len(hidden_units):
        raise ValueError(
            f"keep_prob must have one value or one per hidden layer ({len(hidden_units)}). "
            f"Received: keep_prob={','.join(map(str, keep_prob))}"
        )
    inputs = keras.Input(shape=tuple(input_shape), name="features")
    a = keras.layers.Flatten(name="flatten")(inputs)
    a = keras.layers.Normalization(mean=mean, variance=variance, name="normalize")(a)
    for index, (units, keep) in enumerate(zip(hidden_units, keep_probs), start=1):
        a = layers.Dense(units, initializer=initializer, use_bias=not batch_norm, l2=l2,
                         seed=seed + index, name=f"dense_{index}")(a)
        if batch_norm:
            a = layers.BatchNorm(momentum=bn_momentum, bias_correction=bn_bias_correction,
                                 synchronized=bn_synchronized, name=f"batch_norm_{index}")(a)
        a = keras.layers.Activation(activation, name=f"{activation}_{index}")(a)
        if keep < 1.0:
            a = layers.InvertedDropout(keep, seed=seed + 1000 + index, name=f"dropout_{index}")(a)
    logits = layers.Dense(num_classes, initializer=initializer, l2=l2, seed=seed, name="logits")(a)
    return keras.Model(inputs, logits, name="classifier")


def l2_cost(model, m):
    """Σ_l (λ/2m) ‖W[l]‖²_F over the tfnet ``Dense`` layers of ``model`` with λ > 0 (0.0 if none).

    The same terms a training-mode call adds to ``model.losses``, computed from the kernels only,
    with ``m`` given (the global batch in ``tfnet.training``): no per-layer loss list is read,
    so replicas running in parallel threads cannot see each other's terms. Nested models are
    searched too.
    """
    costs = [layer.l2_cost(m) for layer in _all_layers(model)
             if isinstance(layer, layers.Dense) and layer.l2 > 0.0]
    return tf.add_n(costs) if costs else 0.0


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
