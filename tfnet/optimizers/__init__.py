"""Optimiser registry: the course's optimisers (ours) beside Keras' built-ins, one record each.

``get(name, learning_rate, **hyperparameters)`` builds an optimiser from the course's
hyperparameter names (docs/methods.md §7): ``beta`` (momentum), ``beta1`` / ``beta2`` (Adam,
RMSprop), ``epsilon``, and the options of ours: ``bias_correction`` (momentum),
``epsilon_inside_sqrt`` (RMSprop), ``epsilon_hat`` (Adam). ``gd``, ``momentum``, ``rmsprop``,
``adam`` are this package's implementations of the course's equations (one module each); the
``keras_*`` entries configure Keras' built-ins from those same names through the mappings of
docs/methods.md §7, so that a comparison starts from one set of numbers.

``RECORDS[name]`` is everything the rest of the package knows of an optimiser — the flags and
their help, the training run, ``tfnet.compare``, the benchmarks, the tuner and the study read it:
its factory, the course hyperparameters it takes (any other keyword goes to the
``keras.optimizers.Optimizer`` base class: ``clipnorm``, ``weight_decay``, ...), its update rule
in one line, its default learning rate (Keras' conventions: 0.01 for gradient descent and
momentum, 0.001 for RMSprop and Adam), the learning rates a tuning grid spans, and for ours the
Keras built-in it is compared with. A new optimiser is one module and one record.
"""

import dataclasses
import inspect
from typing import Callable

import keras

from tfnet.optimizers.adam import Adam
from tfnet.optimizers.gradient_descent import GradientDescent
from tfnet.optimizers.momentum import Momentum
from tfnet.optimizers.rmsprop import RMSprop
from tfnet.schedules import ScaledSchedule


def _keras_sgd(learning_rate, **base):
    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.0, **base)


def _keras_momentum(learning_rate, beta=0.9, **base):
    # docs/methods.md §7: v <- m v - lr g equals the course's v <- beta v + (1-beta) g with m = beta
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


@dataclasses.dataclass(frozen=True)
class OptimizerRecord:
    """One registry entry.

    Attributes:
      name: the registry name (the ``--optimizer`` value).
      factory: ``factory(learning_rate, **hyperparameters)`` builds the optimiser.
      hyperparameters: the course hyperparameters it takes, beyond the learning rate.
      update_rule: the update in one line, as the flags' help prints it.
      default_learning_rate: α when none is given.
      learning_rate_range: (low, high), the learning rates a tuning grid spans, log-spaced.
      twin: for ours, the name of the Keras built-in configured to compare with it; else None.
    """

    name: str
    factory: Callable
    hyperparameters: tuple
    update_rule: str
    default_learning_rate: float
    learning_rate_range: tuple
    twin: str = None

    @property
    def defaults(self):
        """The factory's own default of each hyperparameter it takes (what a config leaves at
        None gets)."""
        parameters = inspect.signature(self.factory).parameters
        return {name: parameters[name].default for name in self.hyperparameters}


_RECORDS = (
    OptimizerRecord("gd", GradientDescent, (), "ours: w <- w - alpha g", 0.01, (1e-3, 1.0),
                    twin="keras_sgd"),
    OptimizerRecord("momentum", Momentum, ("beta", "bias_correction"),
                    "ours: v <- beta v + (1-beta) g; w <- w - alpha v (optionally v/(1-beta^t))",
                    0.01, (1e-3, 1.0), twin="keras_momentum"),
    OptimizerRecord("rmsprop", RMSprop, ("beta2", "epsilon", "epsilon_inside_sqrt"),
                    "ours: s <- beta2 s + (1-beta2) g^2; w <- w - alpha g/(sqrt(s)+epsilon)",
                    0.001, (1e-4, 1e-1), twin="keras_rmsprop"),
    OptimizerRecord("adam", Adam, ("beta1", "beta2", "epsilon", "epsilon_hat"),
                    "ours: bias-corrected v, s; w <- w - alpha v_hat/(sqrt(s_hat)+epsilon)",
                    0.001, (1e-4, 1e-1), twin="keras_adam"),
    OptimizerRecord("keras_sgd", _keras_sgd, (), "Keras SGD(momentum=0): w <- w - lr g", 0.01,
                    (1e-3, 1.0)),
    OptimizerRecord("keras_momentum", _keras_momentum, ("beta",),
                    "Keras SGD(momentum=beta, lr=alpha(1-beta)): equal to course momentum at "
                    "constant alpha only", 0.01, (1e-3, 1.0)),
    OptimizerRecord("keras_rmsprop", _keras_rmsprop, ("beta2", "epsilon"),
                    "Keras RMSprop(rho=beta2): epsilon inside the square root", 0.001, (1e-4, 1e-1)),
    OptimizerRecord("keras_adam", _keras_adam, ("beta1", "beta2", "epsilon"),
                    "Keras Adam: 'epsilon hat' form, epsilon outside sqrt of the uncorrected s",
                    0.001, (1e-4, 1e-1)),
)
RECORDS = {record.name: record for record in _RECORDS}
NAMES = tuple(RECORDS)
# Each of ours and the Keras built-in configured to compare with it.
TWINS = {record.name: record.twin for record in _RECORDS if record.twin}
_COURSE_HYPERPARAMETERS = {name for record in _RECORDS for name in record.hyperparameters}


def describe():
    """Help text for an ``--optimizer`` flag: one line per registry name with its update rule."""
    return "\n".join(["One of:"] + [
        f"  {r.name}: {r.update_rule} (default learning rate {r.default_learning_rate:g})"
        for r in _RECORDS])


def get(name, learning_rate, **hyperparameters):
    """Builds the optimiser registered as ``name`` from course hyperparameters.

    Args:
      name: one of ``NAMES``.
      learning_rate: α, a positive float or a ``LearningRateSchedule``.
      **hyperparameters: the course hyperparameters in ``RECORDS[name].hyperparameters`` and any
        ``keras.optimizers.Optimizer`` base-class argument.

    Raises:
      ValueError: for an unknown name (naming the ones that exist), a course hyperparameter the
        entry does not take, or an invalid value.
    """
    if name not in RECORDS:
        raise ValueError(f"optimizer must be one of {', '.join(NAMES)}. Received: optimizer={name!r}")
    record = RECORDS[name]
    for hyperparameter, value in hyperparameters.items():
        if hyperparameter in _COURSE_HYPERPARAMETERS and hyperparameter not in record.hyperparameters:
            raise ValueError(
                f"`{hyperparameter}` is not a hyperparameter of {name!r}, which takes "
                f"{record.hyperparameters or 'none'}. Received: {hyperparameter}={value}"
            )
    return record.factory(learning_rate, **hyperparameters)
