"""Argument checks shared by tfnet's optimisers and schedules.

Every message has one form: the argument, the rule, the value received.
"""

import numbers


def check_learning_rate(learning_rate, name="learning_rate"):
    """Raises ValueError unless a numeric learning rate is > 0.

    A ``LearningRateSchedule`` or callable is accepted as it is: a schedule checks its own
    arguments, and a callable's value is only known at run time.
    """
    if isinstance(learning_rate, numbers.Real) and not learning_rate > 0:
        raise ValueError(f"`{name}` must be > 0. Received: {name}={learning_rate}")


def check_decay(name, value):
    """Raises ValueError unless an averaging coefficient β is in [0, 1)."""
    if not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"`{name}` must be in [0, 1). Received: {name}={value}")


def check_epsilon(epsilon):
    """Raises ValueError unless ε >= 0."""
    if not isinstance(epsilon, numbers.Real) or not epsilon >= 0:
        raise ValueError(f"`epsilon` must be >= 0. Received: epsilon={epsilon}")


def check_positive(name, value):
    """Raises ValueError unless ``value`` is a number > 0."""
    if not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"`{name}` must be > 0. Received: {name}={value}")


def check_non_negative(name, value):
    """Raises ValueError unless ``value`` is a number >= 0."""
    if not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"`{name}` must be >= 0. Received: {name}={value}")


def check_factor(name, value):
    """Raises ValueError unless a decay factor is in (0, 1]."""
    if not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise ValueError(f"`{name}` must be in (0, 1]. Received: {name}={value}")


def check_positive_integer(name, value):
    """Raises ValueError unless ``value`` is an integer > 0."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"`{name}` must be an integer > 0. Received: {name}={value}")
