"""Optimiser registry: the course's optimisers (ours) beside Keras' built-ins.

``get(name, learning_rate, **hyperparameters)`` builds an optimiser from the course's
hyperparameter names (METHODS.md §7): ``beta`` (momentum), ``beta1`` / ``beta2`` (Adam, RMSprop),
``epsilon``, and the options of ours: ``bias_correction`` (momentum), ``epsilon_inside_sqrt``
(RMSprop), ``epsilon_hat`` (Adam). ``gd``, ``momentum``, ``rmsprop``, ``adam`` are this package's
implementations of the course's equations (one module each); the ``keras_*`` entries configure
Keras' built-ins from those same names through the mappings of METHODS.md §7, so that a
comparison starts from one set of numbers.

``HYPERPARAMETERS[name]`` lists the course hyperparameters each entry accepts; any other keyword
is passed to the ``keras.optimizers.Optimizer`` base class (``clipnorm``, ``weight_decay``, ...).
"""

import keras

from tfnet.optimizers.adam import Adam
from tfnet.optimizers.gradient_descent import GradientDescent
from tfnet.optimizers.momentum import Momentum
from tfnet.optimizers.rmsprop import RMSprop
from tfnet.schedules import ScaledSchedule

# The course hyperparameters each registry entry takes (beyond learning_rate).
HYPERPARAMETERS = {
    "gd": (),
    "momentum": ("beta", "bias_correction"),
    "rmsprop": ("beta2", "epsilon", "epsilon_inside_sqrt"),
    "adam": ("beta1", "beta2", "epsilon", "epsilon_hat"),
    "keras_sgd": (),
    "keras_momentum": ("beta",),
    "keras_rmsprop": ("beta2", "epsilon"),
    "keras_adam": ("beta1", "beta2", "epsilon"),
}

DESCRIPTIONS = {
    "gd": "ours: w <- w - alpha g",
    "momentum": "ours: v <- beta v + (1-beta) g; w <- w - alpha v (optionally v/(1-beta^t))",
    "rmsprop": "ours: s <- beta2 s + (1-beta2) g^2; w <- w - alpha g/(sqrt(s)+epsilon)",
    "adam": "ours: bias-corrected v, s; w <- w - alpha v_hat/(sqrt(s_hat)+epsilon)",
    "keras_sgd": "Keras SGD(momentum=0): w <- w - lr g",
    "keras_momentum": (
        "Keras SGD(momentum=beta, lr=alpha(1-beta)): equal to course momentum at constant alpha "
        "only"
    ),
    "keras_rmsprop": "Keras RMSprop(rho=beta2): epsilon inside the square root",
    "keras_adam": "Keras Adam: 'epsilon hat' form, epsilon outside sqrt of the uncorrected s",
}

NAMES = tuple(HYPERPARAMETERS)

# Each of ours and the Keras built-in configured to compare with it.
TWINS = {"gd": "keras_sgd", "momentum": "keras_momentum", "rmsprop": "keras_rmsprop",
         "adam": "keras_adam"}


def describe():
    """Help text for an ``--optimizer`` flag: one line per registry name with its update rule."""
    return "\n".join(["One of:"] + [f"  {name}: {DESCRIPTIONS[name]}" for name in NAMES])

_COURSE_HYPERPARAMETERS = {name for names in HYPERPARAMETERS.values() for name in names}


def _keras_sgd(learning_rate, **base):
    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.0, **base)


def _keras_momentum(learning_rate, beta=0.9, **base):
    # METHODS.md §7: v <- m v - lr g equals the course's v <- beta v + (1-beta) g with m = beta
    # and lr = alpha (1 - beta), exactly, while alpha is constant. A schedule is scaled the same
    # way, but then the two differ: Keras multiplies each gradient by the rate of its own step
    # before averaging, ours multiplies the average by the current rate.
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        scaled = ScaledSchedule(learning_rate, 1.0 - beta)
    else:
        scaled = learning_rate * (1.0 - beta)
    return keras.optimizers.SGD(learning_rate=scaled, momentum=beta, **base)


def _keras_rmsprop(learning_rate, beta2=0.9, epsilon=1e-8, **base):
    return keras.optimizers.RMSprop(learning_rate=learning_rate, rho=beta2, epsilon=epsilon, **base)


def _keras_adam(learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-8, **base):
    return keras.optimizers.Adam(
        learning_rate=learning_rate, beta_1=beta1, beta_2=beta2, epsilon=epsilon, **base
    )


_FACTORIES = {
    "gd": GradientDescent,
    "momentum": Momentum,
    "rmsprop": RMSprop,
    "adam": Adam,
    "keras_sgd": _keras_sgd,
    "keras_momentum": _keras_momentum,
    "keras_rmsprop": _keras_rmsprop,
    "keras_adam": _keras_adam,
}


def get(name, learning_rate, **hyperparameters):
    """Builds the optimiser registered as ``name`` from course hyperparameters.

    Args:
      name: one of ``NAMES``.
      learning_rate: α, a positive float or a ``LearningRateSchedule``.
      **hyperparameters: the course hyperparameters in ``HYPERPARAMETERS[name]`` and any
        ``keras.optimizers.Optimizer`` base-class argument.

    Raises:
      ValueError: for an unknown name (naming the ones that exist), a course hyperparameter the
        entry does not take, or an invalid value.
    """
    if name not in _FACTORIES:
        raise ValueError(f"optimizer must be one of {', '.join(NAMES)}. Received: optimizer={name!r}")
    for hyperparameter, value in hyperparameters.items():
        if hyperparameter in _COURSE_HYPERPARAMETERS and hyperparameter not in HYPERPARAMETERS[name]:
            raise ValueError(
                f"`{hyperparameter}` is not a hyperparameter of {name!r}, which takes "
                f"{HYPERPARAMETERS[name] or 'none'}. Received: {hyperparameter}={value}"
            )
    return _FACTORIES[name](learning_rate, **hyperparameters)
