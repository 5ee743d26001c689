"""Keras 3.15's own optimiser tests, ported and run on tfnet's optimisers beside Keras' own.

Each case comes from keras/src/optimizers/ (`optimizer_test.py`, `sgd_test.py`,
`rmsprop_test.py`, `adam_test.py`, and `keras/src/models/variable_mapping_test.py`), with
Keras' expected numbers; each runs on ours and on the Keras built-in configured as its twin
(docs/methods.md §7), so a case that only Keras passes shows where ours departs. Keras' own
test harness (`keras.src.testing.TestCase`) is used where the case relies on it.
"""

import pickle
import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src import testing

from tfnet.optimizers import Adam, GradientDescent, Momentum, RMSprop

# Keras' built-ins named alike share one auto-name counter with ours: RMSprop and Adam.
KERAS_NAMESAKES = {Adam: keras.optimizers.Adam, RMSprop: keras.optimizers.RMSprop}
CLASSES = {
    "ours_gd": GradientDescent, "ours_momentum": Momentum, "ours_rmsprop": RMSprop,
    "ours_adam": Adam, "keras_sgd": keras.optimizers.SGD, "keras_rmsprop": keras.optimizers.RMSprop,
    "keras_adam": keras.optimizers.Adam,
}


def _auto_name_index(name, prefix):
    """0 for Keras' first auto-name `prefix`, k for `prefix_k` (keras.src.utils.naming.uniquify)."""
    match = re.fullmatch(rf"{re.escape(prefix)}(?:_(\d+))?", name)
    assert match, f"{name!r} is not an auto-name of prefix {prefix!r}"
    return int(match.group(1) or 0)


# ---- optimizer_test.py::test_optimizer_auto_naming ------------------------------------------

@pytest.mark.parametrize("case", CLASSES)
def test_auto_names_are_unique_and_survive_serialization(case):
    cls = CLASSES[case]
    # The prefix is Keras' snake case of the class name ("adam", "gradient_descent", "rm_sprop").
    prefix = keras.src.utils.naming.to_snake_case(cls.__name__)
    first, second, third = cls(), cls(), cls()
    indices = [_auto_name_index(o.name, prefix) for o in (first, second, third)]
    assert indices == [indices[0], indices[0] + 1, indices[0] + 2], [first.name, second.name]
    assert cls(name="my_optimizer").name == "my_optimizer"
    # A reloaded optimiser keeps its name instead of drawing a new one.
    reloaded = keras.optimizers.deserialize(keras.optimizers.serialize(second))
    assert reloaded.name == second.name


@pytest.mark.parametrize("ours", list(KERAS_NAMESAKES))
def test_ours_and_the_keras_namesake_never_take_the_same_name(ours):
    theirs = KERAS_NAMESAKES[ours]()
    prefix = keras.src.utils.naming.to_snake_case(ours.__name__)
    assert _auto_name_index(ours().name, prefix) == _auto_name_index(theirs.name, prefix) + 1


# ---- variable_mapping_test.py: two optimisers in one model ----------------------------------

class _TwoPartModel(keras.Model):
    """Two parts trained by two optimisers (a GAN's generator and discriminator, say), both
    tracked by the model, so both optimisers' variables are in its variable map."""

    def __init__(self, first_optimizer, second_optimizer):
        super().__init__()
        self.first, self.second = keras.layers.Dense(2), keras.layers.Dense(1)
        self.first_optimizer, self.second_optimizer = first_optimizer, second_optimizer

    def call(self, x):
        return self.second(self.first(x))


def _variable_map_of_two_part_model(first_optimizer, second_optimizer):
    model = _TwoPartModel(first_optimizer, second_optimizer)
    model(np.ones((1, 3), "float32"))
    first_optimizer.build(model.first.trainable_variables)
    second_optimizer.build(model.second.trainable_variables)
    return model._get_variable_map()


@pytest.mark.parametrize("cls", [GradientDescent, Momentum, RMSprop, Adam],
                         ids=lambda c: c.__name__)
def test_two_default_optimisers_in_one_model_have_distinct_variable_paths(cls):
    first, second = cls(), cls()
    variable_map = _variable_map_of_two_part_model(first, second)
    assert f"{first.name}/learning_rate" in variable_map
    assert f"{second.name}/learning_rate" in variable_map
    # The failure the auto-names prevent: one fixed name for both.
    with pytest.raises(ValueError, match="duplicate path"):
        _variable_map_of_two_part_model(cls(name="same"), cls(name="same"))


# ---- <name>_test.py::test_config: Keras' serialization harness --------------------------------

CONFIG_CASES = {
    "gd": lambda: GradientDescent(0.5, clipnorm=1.0),
    "momentum": lambda: Momentum(0.5, beta=0.06, bias_correction=True, weight_decay=0.004),
    "rmsprop": lambda: RMSprop(0.5, beta2=0.8, epsilon=1e-6, epsilon_inside_sqrt=True),
    "adam": lambda: Adam(0.5, beta1=0.5, beta2=0.67, epsilon=1e-5, epsilon_hat=True),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_keras_class_serialization_harness(case):
    # get_config -> from_config and serialize -> JSON -> deserialize: equal configs and the
    # same attributes (dir) on the revived optimiser.
    optimizer = CONFIG_CASES[case]()
    revived = testing.TestCase().run_class_serialization_test(optimizer)
    assert revived.name == optimizer.name


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_pickle_round_trip(case):
    # optimizer_test.py::test_pickleable_optimizers
    optimizer = CONFIG_CASES[case]()
    assert pickle.loads(pickle.dumps(optimizer)).get_config() == optimizer.get_config()


# ---- <name>_test.py::test_single_step, with Keras' expected values -----------------------------

# (ours, Keras' twin, expected): Keras' numbers for SGD, RMSprop and Adam at learning rate 0.5
# from [1, 2, 3, 4] with gradient [1, 6, 7, 2]; momentum's by hand: the first step is
# α(1 − β) g = 0.05 g (Keras' twin: SGD(lr = α(1 − β), momentum = β)).
SINGLE_STEP_CASES = {
    "gd": (lambda: GradientDescent(0.5), lambda: keras.optimizers.SGD(0.5),
           [0.5, -1.0, -0.5, 3.0]),
    "momentum": (lambda: Momentum(0.5, beta=0.9),
                 lambda: keras.optimizers.SGD(0.05, momentum=0.9), [0.95, 1.7, 2.65, 3.9]),
    "rmsprop": (lambda: RMSprop(0.5, epsilon=1e-7, epsilon_inside_sqrt=True),
                lambda: keras.optimizers.RMSprop(0.5), [-0.5811, 0.4189, 1.4189, 2.4189]),
    "adam": (lambda: Adam(0.5), lambda: keras.optimizers.Adam(0.5), [0.5, 1.5, 2.5, 3.5]),
}


@pytest.mark.parametrize("side", ["ours", "keras"])
@pytest.mark.parametrize("case", SINGLE_STEP_CASES)
def test_single_step(case, side):
    make_ours, make_keras, expected = SINGLE_STEP_CASES[case]
    optimizer = make_ours() if side == "ours" else make_keras()
    variable = keras.Variable([1.0, 2.0, 3.0, 4.0])
    optimizer.build([variable])
    # The iteration count and the learning rate, then one slot per averaged quantity.
    slots = {"gd": 0, "momentum": 1, "rmsprop": 1, "adam": 2}[case]
    assert len(optimizer.variables) == 2 + slots
    optimizer.apply_gradients([(tf.constant([1.0, 6.0, 7.0, 2.0]), variable)])
    np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-4, atol=1e-4)
    assert int(optimizer.iterations) == 1


# ---- <name>_test.py::test_weight_decay --------------------------------------------------------

TWINS = {
    "gd": (GradientDescent, keras.optimizers.SGD),
    "momentum": (Momentum, keras.optimizers.SGD),
    "rmsprop": (RMSprop, keras.optimizers.RMSprop),
    "adam": (Adam, keras.optimizers.Adam),
}


@pytest.mark.parametrize("side", [0, 1], ids=["ours", "keras"])
@pytest.mark.parametrize("case", TWINS)
def test_weight_decay_and_its_exclusions(case, side):
    cls = TWINS[case][side]
    gradient = tf.zeros(())
    decayed, by_name, by_list = (
        keras.Variable(2.0), keras.Variable(2.0, name="exclude"), keras.Variable(2.0))
    cls(learning_rate=1.0, weight_decay=0.004).apply_gradients([(gradient, decayed)])
    second = cls(learning_rate=1.0, weight_decay=0.004)
    second.exclude_from_weight_decay(var_names=["exclude"])
    second.apply_gradients([(gradient, decayed), (gradient, by_name)])
    third = cls(learning_rate=1.0, weight_decay=0.004)
    third.exclude_from_weight_decay(var_list=[by_list])
    third.apply_gradients([(gradient, decayed), (gradient, by_list)])
    # Three decays of w ← w − w · 0.004 · lr: 2 · 0.996³ = 1.9760959 (Keras' number).
    np.testing.assert_allclose(decayed.numpy(), 1.9760959, atol=1e-6)
    np.testing.assert_allclose([by_name.numpy(), by_list.numpy()], [2.0, 2.0], atol=1e-6)


# ---- optimizer_test.py::test_ema_with_model_fit -----------------------------------------------

@pytest.mark.parametrize("side", [0, 1], ids=["ours", "keras"])
def test_ema_with_model_fit(side):
    # Keras' numbers: w = [1, 1], x = 1, y = 0, so the MSE's gradient is w and each SGD step
    # at lr 0.1 is w ← 0.9 w: 0.9, then 0.81. The EMA starts at the first step's 0.9 and
    # becomes 0.9 · 0.9 + 0.1 · 0.81 = 0.891.
    optimizer = TWINS["gd"][side](learning_rate=0.1, use_ema=True, ema_momentum=0.9)
    model = keras.Sequential([
        keras.Input((1,)), keras.layers.Dense(2, kernel_initializer="ones", use_bias=False)])
    model.compile(loss="mse", optimizer=optimizer, run_eagerly=True)
    model.fit(np.ones((1, 1), "float32"), np.zeros((1, 2), "float32"), batch_size=1, epochs=2,
              verbose=0)
    np.testing.assert_allclose(
        optimizer._model_variables_moving_average[0].numpy(), [[0.891, 0.891]], atol=1e-5)
    # fit() ends by writing the EMA into the model (finalize_variable_values).
    np.testing.assert_allclose(model.trainable_variables[0].numpy(), [[0.891, 0.891]], atol=1e-5)


# ---- optimizer_test.py::test_mixed_with_tf_variables ------------------------------------------

@pytest.mark.parametrize("case", TWINS)
def test_keras_and_tf_variables_in_one_update(case):
    cls = TWINS[case][0]
    v = keras.Variable([[1.0, 2.0], [3.0, 4.0]])
    tf_v = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
    gradient = tf.ones((2, 2))
    optimizer = cls(learning_rate=1.0)
    optimizer.apply_gradients([(gradient, v), (gradient, tf_v)])
    assert int(optimizer.iterations) == 1
    np.testing.assert_array_equal(v.numpy(), tf_v.numpy())
    assert not np.array_equal(tf_v.numpy(), [[1.0, 2.0], [3.0, 4.0]])  # both really moved
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optimizer.apply_gradients([(gradient, v), (None, tf_v)])
    assert any("Gradients do not exist for variables" in str(w.message) for w in caught)
    assert int(optimizer.iterations) == 2
