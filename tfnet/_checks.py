"""The one vocabulary of argument checks: the configs' fields, the optimisers and the schedules
all check their values with these rules.

Every message has one form — the argument, the rule, the value received:

    beta must be in [0, 1). Received: beta=1.5

(a script's flag validator prefixes it with ``--``). Each rule is ``check_<rule>(name, value)``
and raises ``ValueError``; ``or_none(check)`` also accepts None (a setting left to a default).
"""

import numbers


def fail(name, rule, value):
    """Raises the ``ValueError`` of the vocabulary: ``name`` must be ``rule``, ``value`` received."""
    raise ValueError(f"{name} must be {rule}. Received: {name}={value!r}")


def _number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive(name, value):
    """> 0."""
    if not _number(value) or not value > 0:
        fail(name, "> 0", value)


def check_non_negative(name, value):
    """>= 0."""
    if not _number(value) or not value >= 0:
        fail(name, ">= 0", value)


def check_positive_integer(name, value):
    """An integer > 0."""
    if not _integer(value) or value <= 0:
        fail(name, "a positive integer", value)


def check_non_negative_integer(name, value):
    """An integer >= 0."""
    if not _integer(value) or value < 0:
        fail(name, "a non-negative integer", value)


def check_open_unit(name, value):
    """In (0, 1): a fraction that is neither nothing nor everything."""
    if not _number(value) or not 0 < value < 1:
        fail(name, "in (0, 1)", value)


def check_decay(name, value):
    """In [0, 1): an averaging coefficient β (docs/methods.md §6)."""
    if not _number(value) or not 0 <= value < 1:
        fail(name, "in [0, 1)", value)


def check_factor(name, value):
    """In (0, 1]: a decay factor, 1 its no-decay limit (as a decay rate of 0 is)."""
    if not _number(value) or not 0 < value <= 1:
        fail(name, "in (0, 1]", value)


def check_learning_rate(learning_rate, name="learning_rate"):
    """> 0 for a number; a ``LearningRateSchedule`` or callable is accepted as it is: a schedule
    checks its own arguments, and a callable's value is only known at run time."""
    if _number(learning_rate):
        check_positive(name, learning_rate)


def check_epsilon(epsilon, name="epsilon"):
    """ε >= 0."""
    check_non_negative(name, epsilon)


def or_none(check):
    """``check``, except that None (a setting left to its default) passes."""

    def check_or_none(name, value):
        if value is not None:
            check(name, value)

    return check_or_none


def check_positive_integers(name, value):
    """A non-empty sequence of integers > 0 (written comma-separated)."""
    if not value or any(not _integer(v) or v <= 0 for v in value):
        fail(name, "a non-empty comma-separated list of positive integers", ",".join(map(str, value)))


def choice(*allowed):
    """The rule of a value that is one of ``allowed``."""

    def check_choice(name, value):
        if value not in allowed:
            fail(name, f"one of {', '.join(allowed)}", value)

    return check_choice


def names_among(*allowed):
    """The rule of a sequence whose values are each one of ``allowed`` (at least one)."""

    def check_names(name, value):
        if not value or any(v not in allowed for v in value):
            fail(name, f"a comma-separated list of {', '.join(allowed)}", ",".join(map(str, value)))

    return check_names
