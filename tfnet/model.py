"""tfnet's classifiers, a user's model checked, and the model's own regularisation cost.

Two architectures (docs/methods.md §1, §2, §3, §10, §11):

    mlp:  x (raw) → flatten → (x − μ)/σ → [Dense(n_l) → (BatchNorm) → activation → (InvertedDropout)] × L
                  → Dense(C) = z
    cnn:  x (raw images) → (x − μ)/σ per pixel and channel
                  → [Conv2D(f_k, k×k, same) → (BatchNorm over channels) → activation → MaxPool 2×2] × K
                  → flatten → the mlp's hidden layers → Dense(C) = z

The output is the logits z over C classes (two for the 2-D sets: softmax over two logits is
logistic regression, docs/methods.md §11); the loss is computed from logits with log-sum-exp, never
as log(softmax(z)). μ and σ² are the training split's statistics, carried in a
``keras.layers.Normalization`` inside the model so that exported models take raw inputs. With
BatchNorm the hidden Dense and Conv2D layers have no bias (β replaces it). L2 adds
``(λ/2m) Σ‖W‖²`` over every kernel, output layer included, to ``model.losses``;
``regularization_cost(model, m)`` computes the same sum from the kernels alone, plus any Keras
regularizer a user's layer carries.

A user's model (``check_classifier``) may be any Keras model — Sequential, functional or
subclassed, tfnet's layers or Keras' — whose outputs are the C logits.
"""

import keras
import numpy as np
import tensorflow as tf

from tfnet import errors, layers


class ModelError(errors.TfnetError, ValueError):
    """A model that cannot be trained on the data: not a Keras model, the wrong input or output
    shape, or a factory that does not import."""


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
    keep_probs = _keep_probs(keep_prob, hidden_units)
    inputs = keras.Input(shape=tuple(input_shape), name="features")
    a = keras.layers.Flatten(name="flatten")(inputs)
    a = keras.layers.Normalization(mean=mean, variance=variance, name="normalize")(a)
    a = _hidden_layers(a, hidden_units, keep_probs, activation, initializer, batch_norm,
                       bn_momentum, bn_bias_correction, bn_synchronized, l2, seed)
    logits = layers.Dense(num_classes, initializer=initializer, l2=l2, seed=seed, name="logits")(a)
    return keras.Model(inputs, logits, name="classifier")


def _keep_probs(keep_prob, hidden_units):
    keep_probs = tuple(keep_prob) if len(keep_prob) > 1 else tuple(keep_prob) * len(hidden_units)
    if len(keep_probs) != len(hidden_units):
        raise ValueError(
            f"keep_prob must have one value or one per hidden layer ({len(hidden_units)}). "
            f"Received: keep_prob={','.join(map(str, keep_prob))}"
        )
    return keep_probs


def _hidden_layers(a, hidden_units, keep_probs, activation, initializer, batch_norm, bn_momentum,
                   bn_bias_correction, bn_synchronized, l2, seed):
    """[Dense → (BatchNorm) → activation → (InvertedDropout)] per hidden layer, on ``a``."""
    for index, (units, keep) in enumerate(zip(hidden_units, keep_probs), start=1):
        a = layers.Dense(units, initializer=initializer, use_bias=not batch_norm, l2=l2,
                         seed=seed + index, name=f"dense_{index}")(a)
        if batch_norm:
            a = layers.BatchNorm(momentum=bn_momentum, bias_correction=bn_bias_correction,
                                 synchronized=bn_synchronized, name=f"batch_norm_{index}")(a)
        a = keras.layers.Activation(activation, name=f"{activation}_{index}")(a)
        if keep < 1.0:
            a = layers.InvertedDropout(keep, seed=seed + 1000 + index, name=f"dropout_{index}")(a)
    return a


def build_cnn(input_shape, num_classes, conv_filters, hidden_units, mean, variance,
              kernel_size=3, activation="relu", initializer="he", batch_norm=False,
              bn_momentum=0.99, bn_bias_correction=False, bn_synchronized=True, keep_prob=(1.0,),
              l2=0.0, seed=0):
    """Builds the convolutional classifier (see the module docstring).

    Args:
      input_shape: (height, width, channels) of one raw image.
      num_classes: C, the number of logits.
      conv_filters: filters of each convolution block, e.g. (32, 64).
      hidden_units: units of each hidden Dense layer after the blocks, e.g. (64, 32).
      mean, variance: per-feature training statistics of the flattened image (one per pixel
        and channel), applied before the first convolution.
      kernel_size: k, each convolution's k × k kernel ("same" padding, stride 1). Default 3.
      activation, initializer, batch_norm, bn_*, keep_prob, l2, seed: as ``build_model``; the
        BatchNorm of a block normalises each channel over the batch and both image axes, and
        L2 covers the convolution kernels too. Dropout follows the hidden Dense layers.

    Returns:
      A functional ``keras.Model`` from raw images to logits.
    """
    if len(input_shape) != 3:
        raise ModelError(f"model=cnn needs images (height, width, channels). Received: examples "
                         f"of shape {tuple(input_shape)}")
    keep_probs = _keep_probs(keep_prob, hidden_units)
    inputs = keras.Input(shape=tuple(input_shape), name="features")
    shape = tuple(input_shape)
    a = keras.layers.Normalization(axis=(1, 2, 3), mean=np.reshape(mean, shape),
                                   variance=np.reshape(variance, shape), name="normalize")(inputs)
    for index, filters in enumerate(conv_filters, start=1):
        a = layers.Conv2D(filters, kernel_size, padding="same", initializer=initializer,
                          use_bias=not batch_norm, l2=l2, seed=seed + 100 + index,
                          name=f"conv_{index}")(a)
        if batch_norm:
            a = layers.BatchNorm(momentum=bn_momentum, bias_correction=bn_bias_correction,
                                 synchronized=bn_synchronized, name=f"conv_batch_norm_{index}")(a)
        a = keras.layers.Activation(activation, name=f"conv_{activation}_{index}")(a)
        a = keras.layers.MaxPooling2D(2, name=f"pool_{index}")(a)
    a = keras.layers.Flatten(name="flatten")(a)
    a = _hidden_layers(a, hidden_units, keep_probs, activation, initializer, batch_norm,
                       bn_momentum, bn_bias_correction, bn_synchronized, l2, seed)
    logits = layers.Dense(num_classes, initializer=initializer, l2=l2, seed=seed, name="logits")(a)
    return keras.Model(inputs, logits, name="cnn_classifier")


def check_classifier(model, input_shape, num_classes):
    """Raises ``ModelError`` unless ``model`` is a Keras model that takes examples of
    ``input_shape`` and outputs ``num_classes`` logits (it is called once, in inference mode, on
    a batch of zeros, which builds a subclassed model)."""
    if not isinstance(model, keras.Model):
        raise ModelError(f"model must be a keras.Model (or a function returning one). Received: "
                         f"{type(model).__name__}")
    try:
        outputs = model(tf.zeros((1, *input_shape)), training=False)
    except Exception as error:  # noqa: BLE001 — any failure here is the model's or the data's
        raise ModelError(f"model {model.name!r} must take the data's examples of shape "
                         f"{tuple(input_shape)}: calling it on one failed "
                         f"({error_summary(error)})") from None
    if not hasattr(outputs, "shape") or tuple(outputs.shape) != (1, num_classes):
        shape = tuple(outputs.shape) if hasattr(outputs, "shape") else type(outputs).__name__
        raise ModelError(f"model {model.name!r} must output one logit per class, shape (batch, "
                         f"{num_classes}). Received: outputs of shape {shape} for a batch of one")


def error_summary(error):
    """The line of an exception's message that says what went wrong (Keras wraps a layer's error
    in "Exception encountered when calling ..." and lists the arguments after it)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    told = [line for line in lines if not line.startswith(
        ("Exception encountered", "Arguments received", "•", "Call arguments received"))]
    summary = (told or lines or [type(error).__name__])[0]
    return f"{type(error).__name__}: {summary[:300]}"


def l2_cost(model, m):
    """Σ_l (λ/2m) ‖W[l]‖²_F over tfnet's layers of ``model`` with an L2 cost (``Dense``,
    ``Conv2D``: λ > 0), 0.0 if none.

    The same terms a training-mode call adds to ``model.losses``, computed from the kernels only,
    with ``m`` given (the global batch in ``tfnet.training``): no per-layer loss list is read,
    so replicas running in parallel threads cannot see each other's terms. Nested models are
    searched too (Keras' layer walk).
    """
    costs = [layer.l2_cost(m) for layer in model._flatten_layers(include_self=False)
             if hasattr(layer, "l2_cost") and getattr(layer, "l2", 0.0) > 0.0]
    return tf.add_n(costs) if costs else 0.0


def regularization_cost(model, m):
    """The model's own regularisation: tfnet's ``l2_cost(model, m)`` plus every Keras
    regularizer on its trainable weights (``kernel_regularizer=...`` of a user's layer, e.g.
    ``L2(l)``: ``l Σ w²``, which Keras adds to the mean loss whatever the batch size). Both are
    read from the weights, not from ``model.losses`` (see ``l2_cost``)."""
    keras_terms = [w.regularizer(w) for w in model.trainable_weights
                   if getattr(w, "regularizer", None) is not None]
    cost = l2_cost(model, m)
    return cost + tf.add_n(keras_terms) if keras_terms else cost

