"""tfnet.gradcheck on tfnet's own layers: Dense with its (λ/2m)‖W‖² cost, BatchNorm, InvertedDropout.

Models come from `tfnet.model.build_model` (what training builds) in float64. Expected numbers come
from an independent float64 numpy forward pass (J with its L2 term), from tfnet BatchNorm's own
stateful training-mode call (J with batch statistics), or from a bug planted in a subclass of
`tfnet.layers.Dense`.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfnet import gradcheck, layers
from tfnet import model as model_lib

L2 = 0.3
HIDDEN = (5, 4)
CLASSES = 3


def _data(m=8, n_in=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, n_in)) * 2.0 + 0.5
    y = rng.integers(0, CLASSES, m)
    return x, y


def _build(x, **kwargs):
    # The normalisation statistics are the batch's own, as training computes them on its split.
    return model_lib.build_model(
        (x.shape[1],), CLASSES, HIDDEN, x.mean(axis=0), x.var(axis=0), initializer="he",
        seed=7, **kwargs,
    )


def _xent():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _numpy_cost(x, y, kernels, biases, l2):
    """J = mean cross-entropy (log-sum-exp form) + (λ/2m) Σ‖W‖², ReLU hidden layers, float64."""
    a = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0))
    for w, b in zip(kernels[:-1], biases[:-1]):
        a = np.maximum(a @ w + b, 0.0)
    z = a @ kernels[-1] + biases[-1]
    z = z - z.max(axis=1, keepdims=True)
    log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    xent = -log_softmax[np.arange(len(y)), y].mean()
    return xent + l2 / (2 * len(y)) * sum((w**2).sum() for w in kernels)


def test_he_init_with_l2_is_correct_and_cost_includes_the_l2_term(float64):
    x, y = _data()
    model = _build(x, l2=L2)
    report = gradcheck.check_gradients(model, x, y, _xent())
    assert report.verdict == "correct", str(report)
    assert report.relative_difference <= 1e-7
    weights = {v.path: v.numpy() for v in model.trainable_variables}
    kernels = [weights[f"dense_{i}/kernel"] for i in (1, 2)] + [weights["logits/kernel"]]
    biases = [weights[f"dense_{i}/bias"] for i in (1, 2)] + [weights["logits/bias"]]
    np.testing.assert_allclose(report.cost, _numpy_cost(x, y, kernels, biases, L2), rtol=1e-12)
    # The same weights without L2: the costs differ by exactly (λ/2m) Σ‖W‖², m the batch size.
    without = gradcheck.check_gradients(_build(x, l2=0.0), x, y, _xent(), mode="directional")
    l2_term = L2 / (2 * len(y)) * sum((w**2).sum() for w in kernels)
    assert l2_term > 1e-2
    np.testing.assert_allclose(report.cost - without.cost, l2_term, rtol=1e-10)


def test_l2_cost_inside_a_two_device_strategy_scope_is_the_one_device_cost(float64, two_cpu_strategy):
    # In cross-replica context inside strategy.scope() the whole batch is on hand: m is the batch
    # size, not batch size × 2 replicas (which once halved the L2 term of J here).
    x, y = _data()
    one_device = gradcheck.check_gradients(_build(x, l2=L2), x, y, _xent())
    with two_cpu_strategy.scope():
        model = _build(x, l2=L2)
        in_scope = gradcheck.check_gradients(model, x, y, _xent())
    assert in_scope.verdict == "correct", in_scope
    weights = {v.path: v.numpy() for v in model.trainable_variables}
    kernels = [weights[f"dense_{i}/kernel"] for i in (1, 2)] + [weights["logits/kernel"]]
    biases = [weights[f"dense_{i}/bias"] for i in (1, 2)] + [weights["logits/bias"]]
    expected = _numpy_cost(x, y, kernels, biases, L2)
    np.testing.assert_allclose([in_scope.cost, one_device.cost], expected, rtol=1e-12)


@pytest.mark.parametrize("bias_correction", [False, True])
def test_batch_norm_is_correct_and_its_running_averages_unchanged(float64, bias_correction):
    x, y = _data()
    model = _build(x, batch_norm=True, bn_bias_correction=bias_correction, l2=L2)
    batch_norms = [model.get_layer(f"batch_norm_{i}") for i in (1, 2)]
    # Non-default running averages (and step), so that "unchanged" is not "still initial".
    for layer in batch_norms:
        layer.moving_mean.assign(np.linspace(-1.0, 1.0, layer.moving_mean.shape[0]))
        layer.moving_variance.assign(np.linspace(0.5, 2.0, layer.moving_variance.shape[0]))
        if bias_correction:
            layer.step.assign(3)
    state = [v for layer in batch_norms for v in
             (layer.moving_mean, layer.moving_variance) + ((layer.step,) if bias_correction else ())]
    assert len(state) == (6 if bias_correction else 4)
    before = [v.numpy().copy() for v in state]
    report = gradcheck.check_gradients(model, x, y, _xent())
    assert report.verdict == "correct", str(report)
    assert report.relative_difference <= 1e-7
    assert any(b.name == "batch_norm_1/gamma" for b in report.blocks), report
    for old, variable in zip(before, state):
        np.testing.assert_array_equal(old, variable.numpy(), err_msg=variable.path)
    # J is in training mode (batch statistics): tfnet's own training call gives the same cost.
    logits = model(x, training=True)
    expected = float(tf.reduce_mean(_xent().call(y, logits)) + tf.add_n(model.losses))
    np.testing.assert_allclose(report.cost, expected, rtol=1e-12)
    # That call did update the running averages, so the check above can tell.
    assert not np.array_equal(before[0], state[0].numpy())


def test_inverted_dropout_is_refused_with_the_layer_named(float64):
    x, y = _data()
    model = _build(x, keep_prob=(0.5, 1.0))
    with pytest.raises(ValueError, match=r"not a deterministic.*'dropout_1'"):
        gradcheck.check_gradients(model, x, y, _xent())


@pytest.mark.parametrize("inference_layers", [["dropout_1", "dropout_2"], True])
def test_inverted_dropout_in_inference_mode_is_checked(float64, inference_layers):
    x, y = _data()
    model = _build(x, keep_prob=(0.5,), l2=L2)
    report = gradcheck.check_gradients(model, x, y, _xent(), inference_layers=inference_layers)
    assert report.verdict == "correct", str(report)
    # In inference mode dropout is the identity: J equals the numpy cost without dropout.
    weights = {v.path: v.numpy() for v in model.trainable_variables}
    kernels = [weights[f"dense_{i}/kernel"] for i in (1, 2)] + [weights["logits/kernel"]]
    biases = [weights[f"dense_{i}/bias"] for i in (1, 2)] + [weights["logits/bias"]]
    np.testing.assert_allclose(report.cost, _numpy_cost(x, y, kernels, biases, L2), rtol=1e-12)


class L2WithoutGradientDense(layers.Dense):
    """Planted bug: the L2 cost is in J but its gradient (λ/m) W is lost to tf.stop_gradient."""

    def l2_cost(self, batch_size):
        m = tf.cast(batch_size, self.kernel.dtype)
        return self.l2 / (2.0 * m) * tf.reduce_sum(tf.square(tf.stop_gradient(self.kernel)))


def _tfnet_layers_model(dense_class):
    keras.utils.set_random_seed(8)
    inputs = keras.Input((3,))
    a = layers.Dense(6, activation="tanh", l2=L2, seed=1, name="first")(inputs)
    a = dense_class(5, use_bias=False, l2=L2, seed=2, name="planted")(a)
    a = layers.BatchNorm(name="bn")(a)
    a = keras.layers.Activation("tanh")(a)
    outputs = layers.Dense(CLASSES, l2=L2, seed=3, name="last")(a)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("mode", ["full", "sampled", "directional"])
def test_l2_without_gradient_is_wrong_and_located(float64, mode):
    x, y = _data()
    report = gradcheck.check_gradients(_tfnet_layers_model(L2WithoutGradientDense), x, y, _xent(),
                                       mode=mode)
    assert report.verdict == "wrong", report
    assert report.blocks[0].name == "planted/kernel", report
    assert report.worst[0].input == "planted/kernel", report


def test_same_tfnet_layers_model_without_the_bug_is_correct(float64):
    # The planted subclass is the only cause of the "wrong" verdict above.
    x, y = _data()
    report = gradcheck.check_gradients(_tfnet_layers_model(layers.Dense), x, y, _xent())
    assert report.verdict == "correct", str(report)
    assert re.search(r"planted/kernel", str(report))


def test_training_model_has_the_configs_batch_norm_dropout_and_l2():
    # The model checked must be the one tfnet.training.Trainer builds from the same config:
    # BatchNorm (no Dense bias), inverted dropout and the L2 cost included.
    from tfnet import config as config_lib
    from tfnet.gradcheck import training_model

    fields = dict(dataset="moons", hidden_units=(6, 4), activation="tanh", batch_norm=True,
                  bn_bias_correction=True, keep_prob=(0.8,))
    config = config_lib.TrainConfig(l2=L2, **fields)
    model, _ = training_model.build_training_model(config)
    assert {"batch_norm_1", "batch_norm_2", "dropout_1", "dropout_2"} <= {l.name for l in model.layers}
    report = training_model.check_training_model(config, examples=16, inference_layers=True)
    assert report.verdict == "correct", str(report)
    names = [b.name for b in report.blocks]
    assert "batch_norm_1/gamma" in names and "dense_1/bias" not in names, report
    without_l2 = training_model.check_training_model(
        config_lib.TrainConfig(l2=0.0, **fields), examples=16, mode="directional",
        inference_layers=True,
    )
    # J differs by (λ/2m) Σ‖W‖² over every kernel, m = 16 examples (the weights are the same seed's).
    l2_term = L2 / (2 * 16) * sum(
        float(np.sum(v.numpy().astype(np.float64) ** 2))
        for v in model.trainable_variables if v.path.endswith("kernel")
    )
    np.testing.assert_allclose(report.cost - without_l2.cost, l2_term, rtol=1e-9)


def _batch_norm_model(layer, x):
    inputs = keras.Input((x.shape[1],))
    hidden = keras.layers.Dense(4, use_bias=False, kernel_initializer=keras.initializers.GlorotNormal(seed=1))(inputs)
    logits = keras.layers.Dense(CLASSES, kernel_initializer=keras.initializers.GlorotNormal(seed=2))(
        keras.layers.Activation("tanh")(layer(hidden)))
    return keras.Model(inputs, logits)


def test_batch_norm_has_right_second_derivatives_where_tf_nn_moments_has_not(float64):
    # tf.nn.moments, which Keras' BatchNormalization uses, takes the deviations from
    # stop_gradient(μ): the gradient is right, the Hessian is not. tfnet's BatchNorm computes the
    # moments without it, so order=2 finds nothing in it and finds Keras' layer.
    x, y = _data(m=6)
    ours = gradcheck.check_gradients(_batch_norm_model(layers.BatchNorm(), x), x, y, _xent(), order=2,
                                     mode="directional")
    assert ours.verdict == "correct", ours
    keras_layer = gradcheck.check_gradients(
        _batch_norm_model(keras.layers.BatchNormalization(), x), x, y, _xent(), order=2,
        mode="directional")
    assert keras_layer.relative_difference < 1e-7  # first order: both right
    assert keras_layer.verdict == "wrong", keras_layer
