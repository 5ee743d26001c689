"""The optimiser registry: names, records, hyperparameter routing, the docs/methods.md §7 mappings."""

import numpy as np
import pytest

import keras
from tfnet import optimizers, schedules
from tfnet.optimizers import Adam, GradientDescent, Momentum, RMSprop

OURS = ("gd", "momentum", "rmsprop", "adam")

# A value for every course hyperparameter, and where each lands on the built optimiser:
# ours keep the course name; Keras' built-ins take the docs/methods.md §7 mapping.
VALUES = {"beta": 0.8, "beta1": 0.7, "beta2": 0.95, "epsilon": 1e-6, "bias_correction": True,
          "epsilon_inside_sqrt": True, "epsilon_hat": True}
KERAS_ATTRIBUTES = {
    "keras_momentum": {"beta": ("momentum", 0.8)},
    "keras_rmsprop": {"beta2": ("rho", 0.95), "epsilon": ("epsilon", 1e-6)},
    "keras_adam": {"beta1": ("beta_1", 0.7), "beta2": ("beta_2", 0.95), "epsilon": ("epsilon", 1e-6)},
}


def test_ours_come_first_then_keras_builtins_each_ours_with_its_twin():
    assert optimizers.NAMES[:4] == OURS
    assert all(name.startswith("keras_") for name in optimizers.NAMES[4:])
    assert optimizers.TWINS == {"gd": "keras_sgd", "momentum": "keras_momentum",
                                "rmsprop": "keras_rmsprop", "adam": "keras_adam"}
    assert all(optimizers.RECORDS[twin].twin is None for twin in optimizers.TWINS.values())


def test_default_learning_rates_follow_keras_conventions_and_lie_in_the_tuning_range():
    # Keras' SGD defaults to 0.01, its RMSprop and Adam to 0.001; each twin shares its rate.
    expected = {"gd": 0.01, "momentum": 0.01, "rmsprop": 0.001, "adam": 0.001}
    for ours, twin in optimizers.TWINS.items():
        for name in (ours, twin):
            record = optimizers.RECORDS[name]
            assert record.default_learning_rate == expected[ours], name
            low, high = record.learning_rate_range
            assert low < record.default_learning_rate < high
    for keras_class, rate in ((keras.optimizers.SGD, 0.01), (keras.optimizers.Adam, 0.001),
                              (keras.optimizers.RMSprop, 0.001)):
        assert float(keras_class().learning_rate) == pytest.approx(rate)


def test_ours_are_the_package_classes():
    classes = [type(optimizers.get(name, 0.01)) for name in OURS]
    assert classes == [GradientDescent, Momentum, RMSprop, Adam]


@pytest.mark.parametrize("name", optimizers.NAMES)
def test_every_hyperparameter_reaches_the_optimiser(name):
    chosen = {h: VALUES[h] for h in optimizers.RECORDS[name].hyperparameters}
    optimizer = optimizers.get(name, 0.01, clipnorm=2.0, **chosen)
    assert optimizer.clipnorm == 2.0  # base-class keywords pass through
    for hyperparameter, value in chosen.items():
        attribute, expected = KERAS_ATTRIBUTES.get(name, {}).get(hyperparameter, (hyperparameter, value))
        assert getattr(optimizer, attribute) == expected


def test_keras_momentum_rate_is_alpha_times_one_minus_beta():
    optimizer = optimizers.get("keras_momentum", 0.05, beta=0.8)
    np.testing.assert_allclose(float(optimizer.learning_rate), 0.05 * 0.2, rtol=1e-7)


def test_keras_momentum_scales_a_schedule():
    schedule = schedules.get("exponential", 0.05, steps_per_epoch=10, decay_base=0.5)
    optimizer = optimizers.get("keras_momentum", schedule, beta=0.8)
    assert isinstance(optimizer._learning_rate, schedules.ScaledSchedule)
    for step in (0, 7, 30):
        np.testing.assert_allclose(float(optimizer._learning_rate(step)), 0.2 * float(schedule(step)), rtol=1e-7)


def test_unknown_name_is_rejected():
    with pytest.raises(ValueError) as error:
        optimizers.get("sgd", 0.01)
    assert str(error.value) == (
        "optimizer must be one of gd, momentum, rmsprop, adam, keras_sgd, keras_momentum, "
        "keras_rmsprop, keras_adam. Received: optimizer='sgd'"
    )


def test_hyperparameter_of_another_optimiser_is_rejected():
    with pytest.raises(ValueError) as error:
        optimizers.get("gd", 0.01, beta=0.9)
    assert str(error.value) == "`beta` is not a hyperparameter of 'gd', which takes none. Received: beta=0.9"
    with pytest.raises(ValueError, match="`epsilon_hat` is not a hyperparameter of 'keras_adam'"):
        optimizers.get("keras_adam", 0.01, epsilon_hat=True)


def test_invalid_value_is_rejected_through_the_registry():
    with pytest.raises(ValueError, match=r"^beta1 must be in \[0, 1\). Received: beta1=1.0$"):
        optimizers.get("adam", 0.01, beta1=1.0)
    with pytest.raises(ValueError, match=r"^learning_rate must be > 0. Received: learning_rate=0.0$"):
        optimizers.get("rmsprop", 0.0)


def test_keras_entries_are_plain_keras_optimizers():
    assert isinstance(optimizers.get("keras_adam", 0.01), keras.optimizers.Adam)
    assert isinstance(optimizers.get("keras_rmsprop", 0.01), keras.optimizers.RMSprop)
    assert optimizers.get("keras_sgd", 0.01).momentum == 0.0
