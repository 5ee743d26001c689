"""Tests of tfnet.gradcheck: correct models pass, planted bugs are caught and located.

Expected numbers come from independent float64 numpy forward passes (the cost J), from Keras'
own stateful training-mode call (BatchNorm), or from bugs planted in a custom layer whose
tf.custom_gradient returns a known wrong gradient.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfnet import gradcheck

L2 = 0.05


def _data(m=8, n_in=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, n_in)).astype("float32")
    y = rng.integers(0, classes, m)
    return x, y


def _sparse_xent():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _numpy_xent(logits, y):
    # log-sum-exp form of −log softmax(z)_y (docs/methods.md §11), in float64.
    z = logits - logits.max(axis=1, keepdims=True)
    log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -log_softmax[np.arange(len(y)), y].mean()


class PlantedDense(keras.layers.Layer):
    """Dense layer y = x W + b (+ an L2 term λ‖W‖²) whose gradient can be planted wrong.

    bug: "none" (the true gradient), "scaled_kernel" (returns 1.1 × dJ/dW), "zero_bias" (returns
    0 for dJ/db), "l2_without_gradient" (adds λ‖W‖² to the losses through tf.stop_gradient, so J
    contains it but its gradient 2λW is missing), "input_gradient_not_differentiable" (dJ/dx =
    dy Wᵀ with W behind tf.stop_gradient: right values, but its derivative with respect to W, a
    second-order term, is lost).
    """

    def __init__(self, units, bug="none", l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.bug, self.l2 = units, bug, l2

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="random_normal", name="bias")

    def call(self, inputs):
        kernel_scale = 1.1 if self.bug == "scaled_kernel" else 1.0
        bias_scale = 0.0 if self.bug == "zero_bias" else 1.0

        not_differentiable = self.bug == "input_gradient_not_differentiable"
        stop_kernel = tf.stop_gradient if not_differentiable else tf.identity

        @tf.custom_gradient
        def affine(x, kernel, bias):
            def grad(dy):
                return (
                    tf.matmul(dy, stop_kernel(kernel), transpose_b=True),
                    kernel_scale * tf.matmul(x, dy, transpose_a=True),
                    bias_scale * tf.reduce_sum(dy, axis=0),
                )

            return tf.matmul(x, kernel) + bias, grad

        if self.bug == "l2_without_gradient":
            self.add_loss(self.l2 * tf.reduce_sum(tf.square(tf.stop_gradient(self.kernel))))
        elif self.l2:
            self.add_loss(self.l2 * tf.reduce_sum(tf.square(self.kernel)))
        return affine(inputs, self.kernel, self.bias)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "bug": self.bug, "l2": self.l2}


def _planted_model(bug, n_in=4):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((n_in,))
    hidden = keras.layers.Dense(6, activation="tanh", name="first")(inputs)
    hidden = PlantedDense(5, bug=bug, l2=L2, name="planted")(hidden)
    hidden = keras.layers.Activation("tanh")(hidden)
    outputs = keras.layers.Dense(3, name="last")(hidden)
    return keras.Model(inputs, outputs)


def _he_l2_mlp():
    keras.utils.set_random_seed(2)
    dense = dict(kernel_initializer="he_normal", kernel_regularizer=keras.regularizers.L2(L2))
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="tanh", name="hidden", **dense),
            keras.layers.Dense(3, name="output", **dense),
        ]
    )


def test_mlp_with_he_init_and_l2_is_correct_and_cost_includes_l2():
    model = _he_l2_mlp()
    x, y = _data()
    report = gradcheck.check_gradients(model, x, y, _sparse_xent())
    assert report.verdict == "correct", str(report)
    assert report.relative_difference <= 1e-7
    # J twice at θ (the second time to test that it is deterministic), twice per component.
    assert report.evaluations == 2 + 2 * model.count_params()
    # J from a float64 numpy forward pass: mean cross-entropy + λ Σ‖W‖² (Keras' L2 has no 1/2,
    # and keeps λ as a float32 constant, so λ = float32(0.05) here).
    w1, b1, w2, b2 = (v.numpy().astype(np.float64) for v in model.trainable_variables)
    logits = np.tanh(x.astype(np.float64) @ w1 + b1) @ w2 + b2
    expected = _numpy_xent(logits, y) + float(np.float32(L2)) * ((w1**2).sum() + (w2**2).sum())
    np.testing.assert_allclose(report.cost, expected, rtol=1e-12)


def test_softmax_cross_entropy_from_logits_is_correct():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5)])
    x, labels = _data(classes=5)
    y = np.eye(5)[labels]
    report = gradcheck.check_gradients(
        model, x, y, keras.losses.CategoricalCrossentropy(from_logits=True)
    )
    assert report.verdict == "correct", str(report)
    w, b = (v.numpy().astype(np.float64) for v in model.trainable_variables)
    np.testing.assert_allclose(report.cost, _numpy_xent(x @ w + b, labels), rtol=1e-12)


def test_batch_norm_checked_in_training_mode_and_moving_averages_unchanged():
    # A float64 model (dtype given per layer: Keras caches its global dtype policy on first use,
    # so set_floatx alone does not reach layers made later) lets Keras' own forward pass be the
    # reference for J at 1e-12.
    keras.utils.set_random_seed(4)
    model = keras.Sequential(
        [
            keras.Input((4,), dtype="float64"),
            keras.layers.Dense(6, name="dense", dtype="float64"),
            keras.layers.BatchNormalization(name="bn", dtype="float64"),
            keras.layers.Activation("tanh", dtype="float64"),
            keras.layers.Dense(3, name="out", dtype="float64"),
        ]
    )
    bn = model.get_layer("bn")
    bn.moving_mean.assign(np.linspace(-1, 1, 6))  # distinct from the batch statistics
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    x, y = _data()
    report = gradcheck.check_gradients(model, x, y, _sparse_xent())
    assert report.verdict == "correct", str(report)
    for old, new in zip(before, model.non_trainable_variables):
        np.testing.assert_array_equal(old, new.numpy())
    # Keras' own training-mode forward pass (batch statistics) gives the same J.
    xent = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
    expected = float(xent(y, model(x.astype("float64"), training=True)))
    np.testing.assert_allclose(report.cost, expected, rtol=1e-12)


@pytest.mark.parametrize(
    "bug, guilty",
    [
        ("scaled_kernel", "planted/kernel"),
        ("zero_bias", "planted/bias"),
        ("l2_without_gradient", "planted/kernel"),
    ],
)
@pytest.mark.parametrize("mode", ["full", "sampled", "directional"])
def test_planted_bug_is_wrong_and_located(bug, guilty, mode):
    model = _planted_model(bug)
    x, y = _data()
    report = gradcheck.check_gradients(model, x, y, _sparse_xent(), mode=mode)
    assert report.verdict == "wrong", report
    assert report.blocks[0].name == guilty, report
    assert report.worst[0].input == guilty, report


def test_planted_layer_without_bug_is_correct():
    # The same custom_gradient layer with its gradient right: the bugs above are the only cause.
    model = _planted_model("none")
    x, y = _data()
    assert gradcheck.check_gradients(model, x, y, _sparse_xent()).verdict == "correct"


def _small_gradient_model(bug):
    # The logits see `planted` through a kernel 1000 times smaller than initialised, so `first`'s
    # and `planted`'s gradients are ~1e-3 of `last`'s (|dJ/d planted/bias| ≈ 7e-5 against 0.3).
    model = _planted_model(bug)
    kernel = model.get_layer("last").kernel
    kernel.assign(kernel * 1e-3)
    return model


def test_wrong_small_gradient_is_not_diluted_by_the_large_right_ones():
    x, y = _data()
    report = gradcheck.check_gradients(_small_gradient_model("zero_bias"), x, y, _sparse_xent())
    # Alone, the overall figure would call the dropped bias gradient merely "suspect".
    assert 1e-7 < report.relative_difference <= 1e-3, report
    assert report.verdict == "wrong", report
    assert report.verdict_from == "reverse vs numerical, planted/bias", report
    assert report.blocks[0].name == "planted/bias", report
    assert report.verdict_difference == report.blocks[0].relative_difference > 1e-3
    # The same model with the right gradient: its small gradients are no cause for alarm.
    right = gradcheck.check_gradients(_small_gradient_model("none"), x, y, _sparse_xent())
    assert right.verdict == "correct", right


def test_a_zero_gradient_at_round_off_is_correct():
    # A bias right before BatchNorm has gradient 0 (the batch mean removes it): autodiff gives
    # ~1e-17, the differences ~0, so without the round-off floor its relative difference would be
    # ≈ 1 and the per-variable verdict "wrong".
    keras.utils.set_random_seed(4)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6, name="dense"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Activation("tanh"),
            keras.layers.Dense(3, name="out"),
        ]
    )
    x, y = _data()
    report = gradcheck.check_gradients(model, x, y, _sparse_xent())
    assert report.verdict == "correct", str(report)
    (bias,) = [b for b in report.blocks if b.name.endswith("dense/bias")]
    assert bias.reverse_norm < 1e-14 and bias.numerical_norm < 1e-9, report
    assert bias.round_off_norm / report.correct_threshold > 1e3 * (bias.reverse_norm + bias.numerical_norm)


def test_many_small_batches_give_the_same_differences():
    # batch_size=7: the 2 × 83 perturbations take 24 calls, each split among the 3 groups of
    # variables (first/*, planted/*, last/*: a new group at every variable with >= 10% of θ),
    # the last call padded. A perturbation sent to the wrong place would change the numbers.
    x, y = _data()
    default = gradcheck.check_gradients(_planted_model("scaled_kernel"), x, y, _sparse_xent(), k_worst=83)
    small = gradcheck.check_gradients(
        _planted_model("scaled_kernel"), x, y, _sparse_xent(), k_worst=83, batch_size=7
    )
    assert small.evaluations == default.evaluations == 2 + 2 * 83
    assert len(small.worst) == len(default.worst) == 83
    by_component = {(c.input, c.input_index): c.numerical for c in default.worst}
    for c in small.worst:
        np.testing.assert_allclose(c.numerical, by_component[(c.input, c.input_index)], rtol=1e-7,
                                   atol=1e-9, err_msg=f"{c.input}{c.input_index}")
    assert small.verdict == "wrong" and small.blocks[0].name == "planted/kernel", small


def test_user_model_is_not_modified():
    model = _planted_model("none")
    before = [v.numpy().copy() for v in model.weights]
    x, y = _data()
    gradcheck.check_gradients(model, x, y, _sparse_xent())
    assert all(v.dtype == "float32" for v in model.weights)
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, new.numpy())


def _dropout_model():
    keras.utils.set_random_seed(5)
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6, activation="tanh"),
            keras.layers.Dropout(0.5, name="my_dropout"),
            keras.layers.Dense(3),
        ]
    )


def test_active_dropout_is_refused_with_the_layer_named():
    x, y = _data()
    with pytest.raises(ValueError, match="not a deterministic.*my_dropout"):
        gradcheck.check_gradients(_dropout_model(), x, y, _sparse_xent())


@pytest.mark.parametrize("inference_layers", [["my_dropout"], True])
def test_dropout_in_inference_mode_is_checked(inference_layers):
    x, y = _data()
    report = gradcheck.check_gradients(
        _dropout_model(), x, y, _sparse_xent(), inference_layers=inference_layers
    )
    assert report.verdict == "correct", str(report)


def test_kink_is_reported_not_counted():
    # One ReLU unit's pre-activation for example 0 is 1e-7, within the step h ≈ 6e-6 of 0: its
    # one-sided differences disagree. Without kink detection the central difference of
    # relu/bias[0] is about half the autodiff value and the check would say "wrong".
    keras.utils.set_random_seed(6)
    model = keras.Sequential(
        [
            keras.Input((2,), dtype="float64"),
            keras.layers.Dense(3, activation="relu", name="relu", dtype="float64"),
            keras.layers.Dense(1, dtype="float64"),
        ]
    )
    x = np.array([[1.0, 0.5], [-0.3, 2.0], [0.8, -1.2]])
    y = np.array([[1.0], [-1.0], [0.5]])
    kernel, bias = model.get_layer("relu").trainable_variables
    kernel.assign([[1.0, -0.5, 0.7], [0.4, 0.9, -0.2]])
    bias.assign([1e-7 - x[0] @ kernel.numpy()[:, 0], 0.1, 0.1])
    z = x @ kernel.numpy() + bias.numpy()
    smallest = np.sort(np.abs(z).ravel())
    assert 0 < z[0, 0] < 1e-6 and smallest[1] > 1e-2  # only that one ReLU input is near 0
    report = gradcheck.check_gradients(model, x, y, "mean_squared_error")
    # Keras prefixes a Sequential's variable paths with the model's name.
    bias_path = f"{model.name}/relu/bias"
    assert (bias_path, (0,)) in [(k.input, k.input_index) for k in report.kinks], report
    assert report.verdict == "correct", str(report)
    assert report.blocks[[b.name for b in report.blocks].index(bias_path)].kinks >= 1


def test_float32_rescales_thresholds_and_still_catches_the_bug():
    x, y = _data()
    correct = gradcheck.check_gradients(_planted_model("none"), x, y, _sparse_xent(), dtype="float32")
    assert correct.dtype == "float32" and any("rescaled" in note for note in correct.notes)
    assert correct.correct_threshold > 1e-7 and correct.epsilon > 1e-3
    assert correct.verdict == "correct", correct
    wrong = gradcheck.check_gradients(
        _planted_model("scaled_kernel"), x, y, _sparse_xent(), dtype="float32"
    )
    assert wrong.verdict == "wrong" and wrong.blocks[0].name == "planted/kernel", wrong


def _ran_on(report):
    # The devices read back from the tensors the compiled functions returned.
    return {name.split("/")[-1].upper() for name in report.ran_on.split(", ")}


def test_runs_inside_a_two_device_strategy(two_cpu_strategy):
    with two_cpu_strategy.scope():
        model = _planted_model("zero_bias")
        x, y = _data()
        report = gradcheck.check_gradients(model, x, y, _sparse_xent())
    first_device = two_cpu_strategy.extended.worker_devices[0]
    assert report.device == first_device and first_device.upper().endswith("CPU:0")
    assert _ran_on(report) == {"DEVICE:CPU:0"}, report.ran_on
    assert report.verdict == "wrong" and report.blocks[0].name == "planted/bias", report


def test_runs_on_the_device_of_the_current_strategy():
    # A strategy whose device is not TensorFlow's default (/CPU:0): the ops must follow it.
    strategy = tf.distribute.OneDeviceStrategy("/cpu:1")
    x, y = _data()
    with strategy.scope():
        report = gradcheck.check_gradients(_he_l2_mlp(), x, y, _sparse_xent())
    assert _ran_on(report) == {"DEVICE:CPU:1"}, report.ran_on
    assert report.verdict == "correct", str(report)


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_explicit_device(mode):
    x, y = _data()
    report = gradcheck.check_gradients(_he_l2_mlp(), x, y, _sparse_xent(), device="/cpu:1", mode=mode)
    assert report.device == "/cpu:1" and report.verdict == "correct", report
    # J, its gradient and every batch of perturbed J came back from the second logical CPU.
    assert _ran_on(report) == {"DEVICE:CPU:1"}, report.ran_on
    assert "computed on /job:localhost/replica:0/task:0/device:CPU:1" in str(report)
    default = gradcheck.check_gradients(_he_l2_mlp(), x, y, _sparse_xent(), mode=mode)
    assert default.device == "" and _ran_on(default) == {"DEVICE:CPU:0"}, default.ran_on


def test_assert_gradients_correct_raises_with_the_table():
    x, y = _data()
    gradcheck.assert_gradients_correct(_planted_model("none"), x, y, _sparse_xent())
    with pytest.raises(AssertionError, match=r"(?s)WRONG.*per variable.*planted/bias"):
        gradcheck.assert_gradients_correct(_planted_model("zero_bias"), x, y, _sparse_xent())


def _quartic(values):
    (w,) = values
    return tf.reduce_sum(w**4) / 4 + tf.reduce_sum(w[:2] * w[1:])


@tf.custom_gradient
def _wrong_square(w):
    return tf.reduce_sum(w**2), lambda dy: dy * 2.0 * w * tf.constant([1.0, 1.0, 1.5], w.dtype)


def test_check_function_correct_and_wrong():
    w = tf.Variable([0.3, -1.2, 2.0], dtype=tf.float64, name="w")
    report = gradcheck.check_function(_quartic, [w])
    assert report.verdict == "correct" and report.blocks[0].name == "w", report
    wrong = gradcheck.check_function(lambda values: _wrong_square(values[0]), [w])
    assert wrong.verdict == "wrong" and wrong.worst[0].input_index == (2,), wrong
    # numerical derivative of Σw² at w[2] = 2 is 4; the planted gradient 1.5 × 4 = 6.
    np.testing.assert_allclose([wrong.worst[0].numerical, wrong.worst[0].reverse], [4.0, 6.0], rtol=1e-8)


def test_checking_again_and_again_logs_no_retracing_warning(caplog):
    # Each check traces its own functions on purpose; TensorFlow's "triggered tf.function
    # retracing ... define your @tf.function outside of the loop" (from the sixth) is no advice
    # a user checking after every epoch could follow.
    model = _he_l2_mlp()
    x, y = _data()
    w = tf.Variable([0.3, -1.2, 2.0], dtype=tf.float64)
    with caplog.at_level("WARNING"):
        for _ in range(6):
            gradcheck.check_gradients(model, x, y, _sparse_xent(), mode="sampled")
            gradcheck.check_function(_quartic, [w], mode="directional")
            gradcheck.check_jacobian(lambda v: tf.sin(v[0]), [w])
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def test_check_function_refuses_random_function():
    with pytest.raises(ValueError, match="not a deterministic"):
        gradcheck.check_function(
            lambda values: tf.reduce_sum(values[0] * tf.random.uniform([3], dtype=tf.float64)),
            [np.ones(3)],
        )


def test_report_table_lists_variables_and_components():
    x, y = _data()
    text = str(gradcheck.check_gradients(_planted_model("scaled_kernel"), x, y, _sparse_xent(), k_worst=3))
    assert "relative difference" in text and "WRONG" in text
    for name in ("first/kernel", "planted/kernel", "planted/bias", "last/bias"):
        assert name in text
    assert "3 worst entries" in text


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mode="half"), "`mode` must be one of"),
        (dict(epsilon=0.0), "`epsilon` must be a finite number > 0. Received: epsilon=0.0"),
        (dict(k_worst=-1), "`k_worst` must be an integer >= 0. Received: k_worst=-1"),
        (dict(samples_per_variable=0), "`samples_per_variable` must be an integer >= 1"),
        (dict(num_directions=1.5), "`num_directions` must be an integer >= 1"),
        (dict(batch_size=0), "`batch_size` must be None or an integer >= 1"),
        (dict(dtype="float16"), "`dtype` must be one of"),
        (dict(device=""), "`device` must be None or a device name"),
        (dict(inference_layers=["nope"]), "`inference_layers` must name layers of the model"),
        (dict(loss=3), "`loss` must be a keras.losses.Loss"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    x, y = _data()
    arguments = {"loss": _sparse_xent(), **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        gradcheck.check_gradients(_he_l2_mlp(), x, y, **arguments)


def test_bad_model_and_function_raise_value_error():
    x, y = _data()
    unbuilt = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="`model` must be built"):
        gradcheck.check_gradients(unbuilt, x, y, _sparse_xent())
    with pytest.raises(ValueError, match="`model` must be a keras.Model"):
        gradcheck.check_gradients(lambda t: t, x, y, _sparse_xent())
    with pytest.raises(ValueError, match="`fn` must be callable"):
        gradcheck.check_function(3, [np.ones(2)])
    with pytest.raises(ValueError, match="`variables` must be a non-empty list"):
        gradcheck.check_function(_quartic, [])
    with pytest.raises(ValueError, match=re.escape(
            "`fn` must return a scalar J (one element). Received: fn returning [(3,)]")):
        gradcheck.check_function(lambda values: values[0] ** 2, [np.ones(3)])
    with pytest.raises(ValueError, match=re.escape(
            "`variables` must be floating-point arrays, tensors or variables. Received: "
            "variables[0] of dtype int64")):
        gradcheck.check_function(_quartic, [np.arange(3)])


def _moons_config():
    from tfnet import config as config_lib

    return config_lib.TrainConfig(dataset="moons", hidden_units=(8, 4), activation="tanh")


def test_training_model_is_correct_at_initialisation():
    from tfnet.gradcheck import training_model

    report = training_model.check_training_model(_moons_config(), examples=16)
    model, _ = training_model.build_training_model(_moons_config())
    assert report.verdict == "correct", str(report)
    assert report.evaluations == 2 + 2 * sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def test_training_model_restored_from_checkpoint(tmp_path):
    from tfnet import training
    from tfnet.gradcheck import training_model

    config = _moons_config()
    model, train = training_model.build_training_model(config)
    for variable in model.trainable_variables:  # stands in for "after some training"
        variable.assign(variable * 1.5 + 0.1)
    tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    report = training_model.check_training_model(config, checkpoint=str(tmp_path), examples=16)
    assert report.verdict == "correct", str(report)
    # J of the restored weights, from Keras' float32 forward pass and training's own loss.
    x, y = train.features[:16], train.labels[:16]  # the split in memory (tfnet.data.Examples)
    expected = float(tf.reduce_mean(training.cross_entropy(y, model(x))))
    np.testing.assert_allclose(report.cost, expected, rtol=1e-5)
    fresh = training_model.check_training_model(config, examples=16, mode="directional")
    assert abs(fresh.cost - report.cost) > 1e-3


def test_training_model_bad_arguments(tmp_path):
    from tfnet.gradcheck import training_model

    with pytest.raises(ValueError, match=re.escape("`checkpoint` must be a checkpoint prefix")):
        training_model.check_training_model(_moons_config(), checkpoint=str(tmp_path))
    with pytest.raises(ValueError, match=re.escape("`examples` must be an integer >= 1")):
        training_model.check_training_model(_moons_config(), examples=0)
