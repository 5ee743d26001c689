"""Learning-rate schedules against their closed forms (docs/methods.md §8) at chosen epochs.

Expected values are the formulas evaluated in Python floats (float64). The schedules compute in
float32, as Keras' own do, so they must reproduce them to a few float32 roundings (rtol 3e-7,
far below any error in the formula, e.g. an epoch off by one).
"""

import math

import numpy as np
import pytest
import tensorflow as tf

import keras
from tfnet import schedules
from tfnet.optimizers import Adam

ALPHA0, STEPS_PER_EPOCH = 0.2, 10

# (name, decay arguments, [(epoch, expected α)]) with the expected values written from the formula.
FORMULA_CASES = {
    "inverse_time": ({"decay_rate": 0.5}, [
        (0, ALPHA0), (1.5, ALPHA0 / (1 + 0.5 * 1.5)), (3, ALPHA0 / 2.5), (100, ALPHA0 / 51)]),
    "inverse_time_interval": ({"decay_rate": 0.5, "decay_interval": 2}, [
        (1.9, ALPHA0), (2, ALPHA0 / 1.5), (3.9, ALPHA0 / 1.5), (4, ALPHA0 / 2), (9, ALPHA0 / 3)]),
    "exponential": ({"decay_base": 0.9}, [
        (0, ALPHA0), (1, 0.9 * ALPHA0), (2.5, 0.9**2.5 * ALPHA0), (10, 0.9**10 * ALPHA0)]),
    "inverse_sqrt": ({"decay_k": 2.0}, [
        (0, 2 * ALPHA0), (3, 2 / math.sqrt(4) * ALPHA0), (8, 2 / 3 * ALPHA0), (0.5, 2 / math.sqrt(1.5) * ALPHA0)]),
    "step": ({"decay_factor": 0.5, "decay_interval": 3}, [
        (0, ALPHA0), (2.9, ALPHA0), (3, ALPHA0 / 2), (6, ALPHA0 / 4), (8.9, ALPHA0 / 4), (9, ALPHA0 / 8)]),
    "constant": ({}, [(0, ALPHA0), (50, ALPHA0)]),
}


def registry_name(case):
    return case.replace("_interval", "")


def value_at(schedule, step):
    return float(schedule(step)) if callable(schedule) else schedule


@pytest.mark.parametrize("case", FORMULA_CASES)
def test_learning_rate_equals_formula_at_chosen_epochs(case):
    arguments, points = FORMULA_CASES[case]
    schedule = schedules.get(registry_name(case), ALPHA0, STEPS_PER_EPOCH, **arguments)
    for epoch, expected in points:
        step = round(epoch * STEPS_PER_EPOCH)
        np.testing.assert_allclose(value_at(schedule, step), expected, rtol=3e-7, err_msg=f"epoch {epoch}")


@pytest.mark.parametrize("case", [c for c in FORMULA_CASES if c != "constant"])
def test_xla_gives_the_same_rates(case):
    arguments, points = FORMULA_CASES[case]
    schedule = schedules.get(registry_name(case), ALPHA0, STEPS_PER_EPOCH, **arguments)
    compiled = tf.function(lambda step: schedule(step), jit_compile=True)
    for epoch, expected in points:
        # The optimiser's step count is an int64 variable; XLA may round sqrt differently by an ulp.
        step = tf.constant(round(epoch * STEPS_PER_EPOCH), tf.int64)
        np.testing.assert_allclose(float(compiled(step)), expected, rtol=3e-7)


@pytest.mark.parametrize("case", [c for c in FORMULA_CASES if c != "constant"])
def test_serialization_round_trips(case):
    arguments, _ = FORMULA_CASES[case]
    schedule = schedules.get(registry_name(case), ALPHA0, STEPS_PER_EPOCH, **arguments)
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    assert float(restored(37)) == float(schedule(37))


def test_scaled_schedule_multiplies_and_round_trips():
    inner = schedules.get("step", ALPHA0, STEPS_PER_EPOCH, decay_factor=0.5, decay_interval=1)
    scaled = schedules.ScaledSchedule(inner, 0.1)
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(scaled))
    for step in (0, 10, 25):
        expected = 0.1 * ALPHA0 * 0.5 ** (step // STEPS_PER_EPOCH)
        np.testing.assert_allclose([float(scaled(step)), float(restored(step))], expected, rtol=1e-6)


@pytest.mark.parametrize("make_optimizer", [lambda s: Adam(s), lambda s: keras.optimizers.SGD(s)],
                         ids=["tfnet_adam", "keras_sgd"])
def test_drives_ours_and_keras_optimisers(make_optimizer):
    schedule = schedules.get("inverse_time", ALPHA0, STEPS_PER_EPOCH, decay_rate=1.0)
    optimizer = make_optimizer(schedule)
    w = keras.Variable(np.ones(3, "float32"))
    for _ in range(25):
        optimizer.apply([tf.ones(3)], [w])
    # After 25 updates the next step is step 25, epoch 2.5.
    np.testing.assert_allclose(float(optimizer.learning_rate), ALPHA0 / 3.5, rtol=1e-6)


ERROR_CASES = [
    ("constant", {"learning_rate": 0.0}, "learning_rate must be > 0. Received: learning_rate=0.0"),
    ("exponential", {"steps_per_epoch": 0}, "steps_per_epoch must be a positive integer. Received: steps_per_epoch=0"),
    ("step", {"steps_per_epoch": 2.5}, "steps_per_epoch must be a positive integer. Received: steps_per_epoch=2.5"),
    ("inverse_time", {"decay_rate": -1.0}, "decay_rate must be >= 0. Received: decay_rate=-1.0"),
    ("inverse_time", {"decay_interval": 0}, "decay_interval must be > 0. Received: decay_interval=0"),
    ("step", {"decay_interval": -2}, "decay_interval must be > 0. Received: decay_interval=-2"),
    ("exponential", {"decay_base": 1.5}, "decay_base must be in (0, 1]. Received: decay_base=1.5"),
    ("exponential", {"decay_base": 0.0}, "decay_base must be in (0, 1]. Received: decay_base=0.0"),
    ("inverse_sqrt", {"decay_k": 0.0}, "decay_k must be > 0. Received: decay_k=0.0"),
    ("step", {"decay_factor": 2.0}, "decay_factor must be in (0, 1]. Received: decay_factor=2.0"),
    ("exponential", {"decay_rate": 0.5},
     "`decay_rate` is not an argument of the 'exponential' schedule, which takes ('decay_base',). "
     "Received: decay_rate=0.5"),
    ("cosine", {}, "lr_schedule must be one of constant, inverse_time, exponential, inverse_sqrt, step. "
                   "Received: lr_schedule='cosine'"),
]


@pytest.mark.parametrize("name, arguments, message", ERROR_CASES,
                         ids=[f"{n}-{next(iter(a), 'name')}" for n, a, _ in ERROR_CASES])
def test_invalid_argument_raises_value_error_naming_it(name, arguments, message):
    arguments = dict(arguments)
    learning_rate = arguments.pop("learning_rate", ALPHA0)
    steps_per_epoch = arguments.pop("steps_per_epoch", STEPS_PER_EPOCH)
    with pytest.raises(ValueError) as error:
        schedules.get(name, learning_rate, steps_per_epoch, **arguments)
    assert str(error.value) == message


def test_every_registry_name_lists_its_arguments():
    assert schedules.NAMES == ("constant", "inverse_time", "exponential", "inverse_sqrt", "step")
    assert set(schedules.SCHEDULE_ARGUMENTS) == set(schedules.NAMES)
