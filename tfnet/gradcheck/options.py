"""How a check is made: one frozen record of options, checked and resolved on construction.

Every message reads "`arg` must be <rule>. Received: arg=<value>".
"""

import contextlib
import dataclasses

import keras
import numpy as np
import tensorflow as tf

MODES = ("full", "sampled", "directional")
AUTODIFF_MODES = ("rev", "fwd")
ORDERS = (1, 2)
DTYPES = ("float64", "float32")


@dataclasses.dataclass(frozen=True)
class CheckOptions:
    """The keyword arguments of `check_gradients`, `check_function` and `check_jacobian`.

    Once constructed, `modes`, `device`, `dtype` and `epsilon` hold what the check uses.

    Attributes:
        kind: "gradient" (a scalar J: `check_gradients`, `check_function`) or "jacobian" (any
            outputs: `check_jacobian`); set by the check, not by the caller.
        mode: "full" (every component), "sampled" (gradients: per variable the largest and some
            random components) or "directional" (random directions per block, at a cost
            independent of the parameter count); see `tfnet.gradcheck.engine`. Defaults to "full".
        modes: the autodiff modes checked against the differences, as in JAX's check_grads:
            "rev" (tf.GradientTape) and "fwd" (tf.autodiff.ForwardAccumulator). A gradient needs
            "rev": ("rev",) or ("rev", "fwd"); a Jacobian any non-empty subset. Defaults to None:
            ("rev",) for a gradient, ("rev", "fwd") for a Jacobian.
        order: 1, or 2 to check the second order too (the Hessian; `tfnet.gradcheck.checks`),
            whole in full mode up to 4,194,304 entries, else along random directions. Defaults
            to 1.
        epsilon: relative step, h_i = epsilon * max(1, |θ_i|). Defaults to None: eps^(1/3) of
            the dtype (6.1e-6 in float64, 4.9e-3 in float32).
        dtype: "float64" or "float32". Defaults to None: float64, or float32 on a TPU.
        k_worst: how many worst entries the report lists. Defaults to 10.
        samples_per_variable: in "sampled" mode, the largest and the random components checked
            per variable. Defaults to 10.
        num_directions: in "directional" mode, random directions per block. Defaults to 4.
        batch_size: perturbations evaluated per vectorised call. Defaults to None: as many as
            fit in 32 MiB of parameter vectors, at most 512.
        device: e.g. "/GPU:0" or "/TPU:0". Defaults to None: the current tf.distribute
            strategy's first device, else TensorFlow's default placement.
        seed: seed of the sampled components and random directions. Defaults to 0.
    """

    kind: str = "gradient"
    mode: str = "full"
    modes: tuple = None
    order: int = 1
    epsilon: float = None
    dtype: str = None
    k_worst: int = 10
    samples_per_variable: int = 10
    num_directions: int = 4
    batch_size: int = None
    device: str = None
    seed: int = 0

    def __post_init__(self):
        gradient = self.kind == "gradient"
        allowed = MODES if gradient else ("full", "directional")
        if self.mode not in allowed:
            raise ValueError(f"`mode` must be one of {allowed}. Received: mode={self.mode!r}")
        modes = self.modes if self.modes is not None else ("rev",) if gradient else AUTODIFF_MODES
        if not (
            isinstance(modes, (list, tuple)) and modes and set(modes) <= set(AUTODIFF_MODES)
            and len(set(modes)) == len(modes) and (not gradient or "rev" in modes)
        ):
            rule = ("('rev',) or ('rev', 'fwd')" if gradient
                    else f"a non-empty tuple of distinct modes from {AUTODIFF_MODES}")
            raise ValueError(f"`modes` must be {rule}. Received: modes={self.modes!r}")
        if isinstance(self.order, bool) or self.order not in ORDERS:
            raise ValueError(f"`order` must be one of {ORDERS}. Received: order={self.order!r}")
        if self.epsilon is not None and not (np.isfinite(self.epsilon) and self.epsilon > 0):
            raise ValueError(
                f"`epsilon` must be a finite number > 0. Received: epsilon={self.epsilon}"
            )
        for name, low in (("k_worst", 0), ("samples_per_variable", 1), ("num_directions", 1),
                          ("batch_size", 1)):
            value, optional = getattr(self, name), name == "batch_size"
            if not (optional and value is None) and (
                not isinstance(value, (int, np.integer)) or value < low
            ):
                raise ValueError(f"`{name}` must be {'None or ' * optional}an integer >= {low}. "
                                 f"Received: {name}={value!r}")
        device, dtype = self.device, self.dtype
        if device is not None and (not isinstance(device, str) or not device):
            raise ValueError("`device` must be None or a device name such as '/GPU:0'. "
                             f"Received: device={device!r}")
        if device is None and tf.distribute.has_strategy():
            device = tf.distribute.get_strategy().extended.worker_devices[0]
        dtype = tf.as_dtype(dtype).name if isinstance(dtype, tf.DType) else dtype
        if dtype is not None and dtype not in DTYPES:
            raise ValueError(f"`dtype` must be one of {DTYPES} or None. Received: dtype={dtype!r}")
        if dtype is None:
            dtype = "float32" if device and "TPU" in device.upper() else "float64"  # no float64
        epsilon = self.epsilon if self.epsilon is not None else np.finfo(dtype).eps ** (1 / 3)
        for name, value in (("modes", tuple(m for m in AUTODIFF_MODES if m in modes)),
                            ("device", device), ("dtype", dtype), ("epsilon", float(epsilon))):
            object.__setattr__(self, name, value)  # resolved: the report shows what ran


def variable_name(variable, i, argument):
    """A Keras variable's path, a tf.Variable's name, else "<argument>[i]"."""
    if isinstance(variable, keras.Variable):
        return variable.path
    if isinstance(variable, tf.Variable):
        return variable.name.split(":")[0]
    return f"{argument}[{i}]"


def placement(device):
    """`tf.device(device)`, or no change for TensorFlow's default placement (None)."""
    return tf.device(device) if device else contextlib.nullcontext()
