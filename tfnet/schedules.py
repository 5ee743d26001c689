"""Learning-rate decay per epoch (docs/methods.md §8), as Keras ``LearningRateSchedule`` objects.

Every schedule is driven by the optimiser's step count and ``steps_per_epoch``: the epoch is
``e = step / steps_per_epoch`` (a fraction within an epoch), so the rate decays smoothly from
step to step unless a staircase interval is given. They are registered Keras serializables and
work with tfnet's optimisers and with Keras' own. Like Keras' schedules they compute in float32
(the optimiser casts the rate to each variable's dtype).

``get(name, learning_rate, steps_per_epoch, **decay_arguments)`` builds one by name;
``SCHEDULE_ARGUMENTS[name]`` lists the decay arguments each name takes.
"""

import keras
from keras import ops

from tfnet._checks import (
    check_factor,
    check_learning_rate,
    check_non_negative,
    check_positive,
    check_positive_integer,
)

_register = keras.saving.register_keras_serializable(package="tfnet")


@_register
class InverseTimeDecay(keras.optimizers.schedules.InverseTimeDecay):
    """Inverse-time decay per epoch, optionally on a fixed interval (staircase).

    ``α = α₀ / (1 + decay_rate · e)``, or with ``decay_interval`` (in epochs)
    ``α = α₀ / (1 + decay_rate · floor(e / decay_interval))``.

    Keras' ``InverseTimeDecay`` with ``decay_steps = steps_per_epoch · decay_interval`` (1 when
    no interval) and ``staircase = decay_interval is not None`` computes it; this class only
    states it in epochs.

    Args:
      learning_rate: α₀ > 0.
      steps_per_epoch: mini-batches per epoch, an integer > 0.
      decay_rate: >= 0. Defaults to 1.0.
      decay_interval: epochs between decays (> 0), or None to decay every step. Defaults to None.
      name: defaults to ``"inverse_time_decay"``.
    """

    def __init__(self, learning_rate, steps_per_epoch, decay_rate=1.0, decay_interval=None,
                 name="inverse_time_decay"):
        check_learning_rate(learning_rate)
        check_positive_integer("steps_per_epoch", steps_per_epoch)
        check_non_negative("decay_rate", decay_rate)
        if decay_interval is not None:
            check_positive("decay_interval", decay_interval)
        super().__init__(
            learning_rate,
            decay_steps=steps_per_epoch * (1 if decay_interval is None else decay_interval),
            decay_rate=decay_rate,
            staircase=decay_interval is not None,
            name=name,
        )
        self.steps_per_epoch = steps_per_epoch
        self.decay_interval = decay_interval

    def get_config(self):
        return {
            "learning_rate": self.initial_learning_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "decay_rate": self.decay_rate,
            "decay_interval": self.decay_interval,
            "name": self.name,
        }


@_register
class ExponentialDecay(keras.optimizers.schedules.ExponentialDecay):
    """Exponential decay per epoch: ``α = decay_base^e · α₀``.

    Keras' ``ExponentialDecay(decay_steps=steps_per_epoch, decay_rate=decay_base)`` computes it.

    Args:
      learning_rate: α₀ > 0.
      steps_per_epoch: mini-batches per epoch, an integer > 0.
      decay_base: in (0, 1]. Defaults to 0.95.
      name: defaults to ``"exponential_decay"``.
    """

    def __init__(self, learning_rate, steps_per_epoch, decay_base=0.95, name="exponential_decay"):
        check_learning_rate(learning_rate)
        check_positive_integer("steps_per_epoch", steps_per_epoch)
        check_factor("decay_base", decay_base)
        super().__init__(learning_rate, decay_steps=steps_per_epoch, decay_rate=decay_base, name=name)
        self.steps_per_epoch = steps_per_epoch

    def get_config(self):
        return {
            "learning_rate": self.initial_learning_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "decay_base": self.decay_rate,
            "name": self.name,
        }


@_register
class StepDecay(keras.optimizers.schedules.ExponentialDecay):
    """Discrete step decay: ``α = α₀ · decay_factor^floor(e / decay_interval)``.

    For example ``decay_factor=0.5, decay_interval=10`` halves α every 10 epochs. Keras'
    ``ExponentialDecay(decay_steps=steps_per_epoch · decay_interval, decay_rate=decay_factor,
    staircase=True)`` computes it.

    Args:
      learning_rate: α₀ > 0.
      steps_per_epoch: mini-batches per epoch, an integer > 0.
      decay_factor: in (0, 1]. Defaults to 0.5.
      decay_interval: epochs between decays, > 0. Defaults to 10.
      name: defaults to ``"step_decay"``.
    """

    def __init__(self, learning_rate, steps_per_epoch, decay_factor=0.5, decay_interval=10,
                 name="step_decay"):
        check_learning_rate(learning_rate)
        check_positive_integer("steps_per_epoch", steps_per_epoch)
        check_factor("decay_factor", decay_factor)
        check_positive("decay_interval", decay_interval)
        super().__init__(
            learning_rate,
            decay_steps=steps_per_epoch * decay_interval,
            decay_rate=decay_factor,
            staircase=True,
            name=name,
        )
        self.steps_per_epoch = steps_per_epoch
        self.decay_interval = decay_interval

    def get_config(self):
        return {
            "learning_rate": self.initial_learning_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "decay_factor": self.decay_rate,
            "decay_interval": self.decay_interval,
            "name": self.name,
        }


@_register
class InverseSqrtDecay(keras.optimizers.schedules.LearningRateSchedule):
    """The course's ``α = k / √epoch · α₀``, with epochs counted from 1.

    ``α = decay_k · α₀ / √(1 + e)`` with ``e = step / steps_per_epoch``: the first step
    (``e = 0``, epoch 1) uses ``decay_k · α₀`` and the rate is finite everywhere, where
    ``k / √e`` with e counted from 0 would be infinite at the start. Keras has no built-in for it.

    Args:
      learning_rate: α₀ > 0.
      steps_per_epoch: mini-batches per epoch, an integer > 0.
      decay_k: k > 0. Defaults to 1.0.
      name: defaults to ``"inverse_sqrt_decay"``.
    """

    def __init__(self, learning_rate, steps_per_epoch, decay_k=1.0, name="inverse_sqrt_decay"):
        check_learning_rate(learning_rate)
        check_positive_integer("steps_per_epoch", steps_per_epoch)
        check_positive("decay_k", decay_k)
        self.learning_rate = learning_rate
        self.steps_per_epoch = steps_per_epoch
        self.decay_k = decay_k
        self.name = name

    def __call__(self, step):
        # float32, like Keras' schedules (ops.convert_to_tensor of a Python float).
        learning_rate = ops.convert_to_tensor(self.learning_rate)
        dtype = learning_rate.dtype
        epoch = ops.cast(step, dtype) / ops.cast(self.steps_per_epoch, dtype)
        return ops.cast(self.decay_k, dtype) * learning_rate / ops.sqrt(1 + epoch)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "decay_k": self.decay_k,
            "name": self.name,
        }


@_register
class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``factor · schedule(step)``: a schedule multiplied by a constant.

    The registry uses it to give Keras' ``SGD(momentum=β)`` the rate ``α(1 − β)`` of
    docs/methods.md §7 when α is itself a schedule.

    Args:
      schedule: a ``LearningRateSchedule``.
      factor: a number > 0.
    """

    def __init__(self, schedule, factor):
        check_positive("factor", factor)
        self.schedule = schedule
        self.factor = factor

    def __call__(self, step):
        learning_rate = self.schedule(step)
        return ops.cast(self.factor, learning_rate.dtype) * learning_rate

    def get_config(self):
        return {
            "schedule": keras.optimizers.schedules.serialize(self.schedule),
            "factor": self.factor,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = keras.optimizers.schedules.deserialize(config["schedule"])
        return cls(**config)


# The decay arguments (train.py's --decay_* flags) each schedule takes.
SCHEDULE_ARGUMENTS = {
    "constant": (),
    "inverse_time": ("decay_rate", "decay_interval"),
    "exponential": ("decay_base",),
    "inverse_sqrt": ("decay_k",),
    "step": ("decay_factor", "decay_interval"),
}

NAMES = tuple(SCHEDULE_ARGUMENTS)

_CLASSES = {
    "inverse_time": InverseTimeDecay,
    "exponential": ExponentialDecay,
    "inverse_sqrt": InverseSqrtDecay,
    "step": StepDecay,
}


def get(name, learning_rate, steps_per_epoch, **decay_arguments):
    """Builds the learning-rate schedule registered as ``name``.

    Args:
      name: one of ``NAMES``; ``"constant"`` returns ``learning_rate`` itself (a float).
      learning_rate: α₀, a float > 0.
      steps_per_epoch: mini-batches per epoch, an integer > 0.
      **decay_arguments: those in ``SCHEDULE_ARGUMENTS[name]``; any left out take the class
        default.

    Raises:
      ValueError: for an unknown name, a decay argument the schedule does not take, or an
        invalid value (naming the argument).
    """
    if name not in SCHEDULE_ARGUMENTS:
        raise ValueError(f"lr_schedule must be one of {', '.join(NAMES)}. Received: lr_schedule={name!r}")
    for argument in decay_arguments:
        if argument not in SCHEDULE_ARGUMENTS[name]:
            raise ValueError(
                f"`{argument}` is not an argument of the {name!r} schedule, which takes "
                f"{SCHEDULE_ARGUMENTS[name] or 'none'}. Received: {argument}={decay_arguments[argument]}"
            )
    check_learning_rate(learning_rate)
    check_positive_integer("steps_per_epoch", steps_per_epoch)
    if name == "constant":
        return learning_rate
    return _CLASSES[name](learning_rate, steps_per_epoch, **decay_arguments)
