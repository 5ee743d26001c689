"""A Keras model's training cost as a pure function of its weights, on a float64 twin.

The user's model is never modified and never called: each layer is rebuilt by `from_config` with
the dtype replaced (`keras.models.clone_model`), so any layer whose config round-trips is twinned
(convolutions, pooling, custom layers and the layers they make themselves), and the twin is only
run through `stateless_call` with weight values passed in, so no variable (BatchNorm's moving
averages, the dropout seeds) is ever written.
"""

import inspect

import keras
import numpy as np
import tensorflow as tf

# Layer classes drawing random numbers in training without a keras.random.SeedGenerator attribute
# are recognised by these words in their class name.
_STOCHASTIC_WORDS = ("Dropout", "Noise", "Random")


def float_twin(model, dtype):
    """A clone of `model` whose every layer computes and stores its weights in `dtype`."""
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model. Received: model={model!r}")
    if not model.built:
        raise ValueError(
            f"`model` must be built (call it on a batch once) before its gradients can be checked."
            f" Received: model={model.name!r} (not built)"
        )

    def clone_layer(layer):
        config = layer.get_config()
        config["dtype"] = dtype
        if isinstance(layer, keras.layers.Normalization) and config.get("mean") is not None:
            # get_config lists the statistics as Python floats, which Normalization.build turns
            # into float32 tensors: as float64 arrays they keep every digit of the model's.
            config["mean"] = np.asarray(config["mean"], dtype=np.float64)
            config["variance"] = np.asarray(config["variance"], dtype=np.float64)
        return layer.__class__.from_config(config)

    if isinstance(model, keras.Sequential):
        # A Sequential that was never called has no `input`; its build shape gives the input's.
        input_shape = model.get_build_config()["input_shape"]
        inputs = keras.Input(batch_shape=(None,) + tuple(input_shape[1:]), dtype=dtype)
    else:
        inputs = tf.nest.map_structure(lambda tensor: keras.Input(
            batch_shape=tensor.shape, name=tensor.name,
            dtype=dtype if keras.backend.is_float_dtype(tensor.dtype) else tensor.dtype,
        ), model.input)
    # Under the twin's dtype policy (Keras keeps it per thread), so that the layers a layer makes
    # itself without a dtype (a block's convolutions, made in its __init__ or build) are twinned
    # too, not left in float32.
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        twin = keras.models.clone_model(
            model, input_tensors=inputs, clone_function=clone_layer, recursive=True
        )
    except (ValueError, TypeError, AttributeError) as error:
        raise ValueError(
            f"`model` must be a Sequential or functional keras.Model whose layers implement "
            f"get_config (a {dtype} copy is built from it); for other models use "
            f"check_function. Received: model={model.name!r} ({error})"
        ) from error
    finally:
        keras.config.set_dtype_policy(policy)
    for kind in ("trainable_variables", "non_trainable_variables"):
        ours, theirs = getattr(twin, kind), getattr(model, kind)
        if [tuple(v.shape) for v in ours] != [tuple(v.shape) for v in theirs]:
            raise ValueError(
                f"`model`'s {kind} could not be reproduced by cloning its layers' configs: "
                f"{[v.path for v in theirs]} vs {[v.path for v in ours]}"
            )
    return twin


def all_layers(model):
    """Every layer of `model`, nested models' layers included, depth first."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


def stochastic_layers(model):
    """Names of the layers that draw random numbers in training mode."""
    return [
        layer.name
        for layer in all_layers(model)
        if any(isinstance(a, keras.random.SeedGenerator) for a in vars(layer).values())
        or any(word in type(layer).__name__ for word in _STOCHASTIC_WORDS)
    ]


def run_in_inference_mode(twin, inference_layers):
    """Makes the named twin layers (all stochastic ones when True) ignore `training=True`."""
    if inference_layers is False or inference_layers is None:
        return []
    names = stochastic_layers(twin) if inference_layers is True else list(inference_layers)
    layers = {layer.name: layer for layer in all_layers(twin)}
    for name in names:
        if name not in layers:
            raise ValueError(
                f"`inference_layers` must name layers of the model ({sorted(layers)}). "
                f"Received: inference_layers={inference_layers!r}"
            )
        layer = layers[name]
        if "training" not in inspect.signature(layer.call).parameters:
            raise ValueError(
                f"`inference_layers` must name layers whose call takes a `training` argument. "
                f"Received: inference_layers={inference_layers!r} ({name!r} has none)"
            )
        # The twin is ours, so its layer's call can be wrapped; Keras' __call__ still passes the
        # training flag of the enclosing call, which this overrides.
        layer.call = lambda *args, call=layer.call, **kwargs: call(
            *args, **{**kwargs, "training": False})
    return names


def loss_function(loss):
    """The per-example loss function of a keras.losses.Loss, a Keras loss name or a callable.

    A `keras.losses.Loss` object's `__call__` would cast to its own dtype (floatx) and scale by
    the number of replicas under a tf.distribute strategy, so its `call` is used instead and the
    mean taken here.
    """
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        return loss.call
    if callable(loss):
        return loss
    raise ValueError(
        f"`loss` must be a keras.losses.Loss, a Keras loss name or a callable (y, y_pred). "
        f"Received: loss={loss!r}"
    )


def model_cost(twin, x, y, loss, dtype):
    """cost(values, state) -> (J, new_state), J = mean(loss(y, model(x))) + sum(model.losses) as a
    (1,) tensor: the flat outputs the engine checks.

    The twin runs in training mode (BatchNorm normalises with the batch statistics); the returned
    state is what training would have written (moving averages, advanced seeds), discarded by
    the caller except to test that J is deterministic.
    """
    per_example_loss = loss_function(loss)

    def cast(tensor):
        tensor = tf.convert_to_tensor(tensor)
        return tf.cast(tensor, dtype) if tensor.dtype.is_floating else tensor

    x = tf.nest.map_structure(cast, x)
    y = tf.nest.map_structure(cast, y)

    def cost(values, state):
        # Keras tracks which collected loss is whose by `id()` of the tensors and forgets none
        # of the ids until a call clears them; `stateless_call` enters each sublayer's call as a
        # call of its own, which drops from the collected losses any whose id that layer has
        # kept from an earlier trace. Python reuses the ids of freed tensors, so a stale id of
        # one layer could drop another's L2 term from J in one trace and not the next (seen as a
        # wrong BatchNorm check in some test orders). Every id is cleared first.
        _forget_loss_ids(twin)
        y_pred, new_state, losses = twin.stateless_call(
            values, state, x, training=True, return_losses=True
        )
        j = tf.reduce_mean(per_example_loss(y, y_pred))
        for regularisation in losses:
            j += tf.cast(regularisation, j.dtype)
        return tf.reshape(j, [1]), new_state

    return cost


def _forget_loss_ids(model):
    """Clears the ids by which `model` and every layer in it, however nested, recognise their
    added losses (Keras' private `Layer._loss_ids` and `_flatten_layers`)."""
    for layer in model._flatten_layers(include_self=True, recursive=True):
        layer._loss_ids.clear()
