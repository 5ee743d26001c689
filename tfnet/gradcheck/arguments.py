"""Arguments of the checks: checked on entry, one message form, and resolved (device, dtype, names).

Every message reads "`arg` must be <rule>. Received: arg=<value>".
"""

import contextlib

import keras
import numpy as np
import tensorflow as tf

MODES = ("full", "sampled", "directional")
JACOBIAN_MODES = ("full", "directional")
AUTODIFF_MODES = ("rev", "fwd")
ORDERS = (1, 2)
DTYPES = ("float64", "float32")


def check_modes(modes, *, require_rev):
    """The autodiff modes as a tuple in ("rev", "fwd") order; ValueError unless valid (with
    `require_rev`, "rev" must be among them)."""
    valid = (
        isinstance(modes, (list, tuple))
        and len(modes) > 0
        and all(isinstance(m, str) and m in AUTODIFF_MODES for m in modes)
        and len(set(modes)) == len(modes)
        and (not require_rev or "rev" in modes)
    )
    if not valid:
        rule = (
            "('rev',) or ('rev', 'fwd')" if require_rev
            else f"a non-empty tuple of distinct modes from {AUTODIFF_MODES}"
        )
        raise ValueError(f"`modes` must be {rule}. Received: modes={modes!r}")
    return tuple(m for m in AUTODIFF_MODES if m in modes)


def check_order(order):
    if isinstance(order, bool) or order not in ORDERS:
        raise ValueError(f"`order` must be one of {ORDERS}. Received: order={order!r}")


def check_arguments(mode, epsilon, k_worst, samples_per_variable, num_directions, batch_size,
                    allowed_modes=MODES):
    """Raises ValueError naming the argument, the rule and the value received."""
    if mode not in allowed_modes:
        raise ValueError(f"`mode` must be one of {allowed_modes}. Received: mode={mode!r}")
    if epsilon is not None and not (np.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"`epsilon` must be a finite number > 0. Received: epsilon={epsilon}")
    for name, value, low in (
        ("k_worst", k_worst, 0),
        ("samples_per_variable", samples_per_variable, 1),
        ("num_directions", num_directions, 1),
    ):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"`{name}` must be an integer >= {low}. Received: {name}={value!r}")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(
            f"`batch_size` must be None or an integer >= 1. Received: batch_size={batch_size!r}"
        )


def check_function_and_values(fn, values, argument):
    """ValueError unless `fn` is callable and `values` (called `argument`) a non-empty list."""
    if not callable(fn):
        raise ValueError(f"`fn` must be callable. Received: fn={fn!r}")
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(
            f"`{argument}` must be a non-empty list of variables or arrays. "
            f"Received: {argument}={values!r}"
        )


def variable_name(variable, i, argument="variables"):
    """A Keras variable's path, a tf.Variable's name, else "<argument>[i]"."""
    if isinstance(variable, keras.Variable):
        return variable.path
    if isinstance(variable, tf.Variable):
        return variable.name.split(":")[0]
    return f"{argument}[{i}]"


def resolve_device(device):
    if device is not None:
        if not isinstance(device, str) or not device:
            raise ValueError(
                f"`device` must be None or a device name such as '/GPU:0'. Received: device={device!r}"
            )
        return device
    if tf.distribute.has_strategy():
        return tf.distribute.get_strategy().extended.worker_devices[0]
    return None


def resolve_dtype(dtype, device):
    if dtype is None:
        # TPUs have no float64 arithmetic.
        return "float32" if device and "TPU" in device.upper() else "float64"
    dtype = tf.as_dtype(dtype).name if isinstance(dtype, tf.DType) else dtype
    if dtype not in DTYPES:
        raise ValueError(f"`dtype` must be one of {DTYPES} or None. Received: dtype={dtype!r}")
    return dtype


def placement(device):
    return tf.device(device) if device else contextlib.nullcontext()
