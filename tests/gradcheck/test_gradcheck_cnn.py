"""tfnet.gradcheck on convolutional models: the float64 twin of convolutions, pooling and BatchNorm.

The models have the shape of training's CNN, [Conv2D → tfnet BatchNorm over channels (axis -1 of
the 4-D input) → activation → pooling] × 2 → Flatten or GlobalAveragePooling2D → tfnet Dense
logits with L2. Expected numbers come from an independent float64 numpy forward pass (its own
convolution, BatchNorm, pooling, cross-entropy and L2), from Keras' own float64 training-mode
forward pass, or from a bug planted in a convolution's hand-written gradient.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfnet import gradcheck, layers

L2 = 0.3
CLASSES = 3
BN_EPSILON = 1e-3  # tfnet.layers.BatchNorm's default


def _data(m=4, side=8, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, side, side, channels)).astype("float32")
    return x, rng.integers(0, CLASSES, m)


def _xent():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _cnn(pooling, conv_class=keras.layers.Conv2D, side=8):
    """[Conv2D → BatchNorm → activation → pooling] × 2 → Flatten (max pooling) or
    GlobalAveragePooling2D (average pooling) → Dense logits with L2; 'valid' convolutions."""
    keras.utils.set_random_seed(9)
    inputs = keras.Input((side, side, 2))
    a = inputs
    for i, (filters, size) in enumerate(((3, 3), (4, 2)), start=1):
        conv = conv_class if i == 2 else keras.layers.Conv2D
        a = conv(filters, size, name=f"conv_{i}")(a)
        a = layers.BatchNorm(name=f"batch_norm_{i}")(a)
        a = keras.layers.Activation("relu" if pooling == "max" else "tanh")(a)
        pool = keras.layers.MaxPooling2D if pooling == "max" else keras.layers.AveragePooling2D
        a = pool(2, padding="same" if i == 2 else "valid")(a)
    a = keras.layers.Flatten()(a) if pooling == "max" else keras.layers.GlobalAveragePooling2D()(a)
    return keras.Model(inputs, layers.Dense(CLASSES, l2=L2, seed=3, name="logits")(a))


def _numpy_cost(model, x, y, pooling):
    """J of `_cnn(pooling)` in float64 numpy: its own convolution, BatchNorm (batch statistics),
    pooling, log-sum-exp cross-entropy and (λ/2m)‖W‖²."""
    w = {v.path: v.numpy().astype(np.float64) for v in model.trainable_variables}

    def conv(a, kernel, bias):  # 'valid', stride 1: (m, H, W, C) -> (m, H - kh + 1, W - kw + 1, F)
        windows = np.lib.stride_tricks.sliding_window_view(a, kernel.shape[:2], axis=(1, 2))
        return np.einsum("mijcab,abcf->mijf", windows, kernel) + bias

    def pool(a, reduce):  # 2 × 2 windows, stride 2 (the sides are even: 'same' pads nothing)
        m, height, width, c = a.shape
        return reduce(a.reshape(m, height // 2, 2, width // 2, 2, c), axis=(2, 4))

    a = x.astype(np.float64)
    for i in (1, 2):
        z = conv(a, w[f"conv_{i}/kernel"], w[f"conv_{i}/bias"])
        z_norm = (z - z.mean(axis=(0, 1, 2))) / np.sqrt(z.var(axis=(0, 1, 2)) + BN_EPSILON)
        z = w[f"batch_norm_{i}/gamma"] * z_norm + w[f"batch_norm_{i}/beta"]
        a = pool(np.maximum(z, 0.0), np.max) if pooling == "max" else pool(np.tanh(z), np.mean)
    a = a.reshape(len(a), -1) if pooling == "max" else a.mean(axis=(1, 2))
    logits = a @ w["logits/kernel"] + w["logits/bias"]
    logits = logits - logits.max(axis=1, keepdims=True)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    l2_cost = L2 / (2 * len(y)) * np.sum(w["logits/kernel"] ** 2)
    return -log_softmax[np.arange(len(y)), y].mean() + l2_cost


# Forward mode through average pooling: the planted-bug test below.
@pytest.mark.parametrize("pooling, modes", [pytest.param("max", ("rev", "fwd"), id="max_rev_fwd"),
                                            pytest.param("average", ("rev",), id="average_rev")])
def test_cnn_gradients_are_correct_and_j_is_computed_in_float64(pooling, modes):
    x, y = _data()
    model = _cnn(pooling)  # float32, as training builds it
    report = gradcheck.check_gradients(model, x, y, _xent(), modes=modes)
    assert report.verdict == "correct" and report.dtype == "float64", report
    assert report.modes == modes and all(d <= 1e-7 for _, d in report.differences), report
    assert {"conv_1/kernel", "conv_2/bias", "batch_norm_2/gamma", "logits/kernel"} <= {
        b.name for b in report.blocks}, report
    components = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert report.evaluations == 2 + 2 * components, report
    # The twin computes in float64: J agrees with numpy's float64 forward pass to 1e-12, where a
    # float32 forward pass (the model's own) agrees only to about 1e-7.
    expected = _numpy_cost(model, x, y, pooling)
    np.testing.assert_allclose(report.cost, expected, rtol=1e-12)
    own = float(tf.reduce_mean(_xent().call(y, model(x, training=True))) + tf.add_n(model.losses))
    np.testing.assert_allclose(own, expected, rtol=1e-5)


def test_batch_norm_over_channels_is_checked_in_training_mode_and_left_unchanged(float64):
    # A float64 model lets Keras' own training-mode forward pass be the reference for J at 1e-12.
    x, y = _data(m=5, side=9)
    model = _cnn("max", side=9)
    batch_norm = model.get_layer("batch_norm_1")
    batch_norm.moving_mean.assign([0.5, -1.0, 2.0])  # not the batch statistics
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    report = gradcheck.check_gradients(model, x, y, _xent(), mode="sampled")
    assert report.verdict == "correct", str(report)
    for old, variable in zip(before, model.non_trainable_variables):
        np.testing.assert_array_equal(old, variable.numpy(), err_msg=variable.path)
    logits = model(x, training=True)
    expected = float(tf.reduce_mean(_xent().call(y, logits)) + tf.add_n(model.losses))
    np.testing.assert_allclose(report.cost, expected, rtol=1e-12)
    assert not np.array_equal(before[0], batch_norm.moving_mean.numpy())  # that call did write


# Of conv_2's (2, 2, 3, 4) kernel: its largest dJ/dW (0.22) in `_cnn("average")` at seed 9.
PLANTED_INDEX = (0, 1, 2, 2)


class PlantedConv2D(keras.layers.Layer):
    """A 'valid' 2-D convolution y = conv(x, W) + b whose hand-written gradient can be wrong.

    bug: "none" (the true gradient: TensorFlow's Conv2DBackpropInput / Conv2DBackpropFilter) or
    "one_component" (dJ/dW[PLANTED_INDEX] returned 1.5 times too large).
    """

    def __init__(self, filters, size, bug="none", **kwargs):
        super().__init__(**kwargs)
        self.filters, self.size, self.bug = filters, size, bug

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(self.size, self.size, input_shape[-1], self.filters),
                                      initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.filters,), initializer="random_normal", name="bias")

    def call(self, inputs):
        scale = np.ones(self.kernel.shape)
        if self.bug == "one_component":
            scale[PLANTED_INDEX] = 1.5

        @tf.custom_gradient
        def conv(x, kernel):
            def grad(dy):
                same = dict(out_backprop=dy, strides=[1, 1, 1, 1], padding="VALID")
                dx = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=kernel, **same)
                dw = tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(kernel), **same)
                return dx, dw * tf.constant(scale, dw.dtype)

            return tf.nn.conv2d(x, kernel, 1, "VALID"), grad

        return conv(inputs, self.kernel) + self.bias

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "size": self.size, "bug": self.bug}


def _planted(bug):
    return lambda filters, size, name: PlantedConv2D(filters, size, bug=bug, name=name)


def test_planted_conv_gradient_is_wrong_and_named_down_to_the_component():
    x, y = _data()
    report = gradcheck.check_gradients(_cnn("average", _planted("one_component")), x, y, _xent(),
                                       modes=("rev", "fwd"))
    assert report.verdict == "wrong", report
    assert report.blocks[0].name == "conv_2/kernel", report
    worst = report.worst[0]
    assert (worst.input, worst.input_index) == ("conv_2/kernel", PLANTED_INDEX), report
    # Forward mode never calls the hand-written gradient: it agrees with the differences.
    np.testing.assert_allclose([worst.reverse, worst.forward],
                               [1.5 * worst.numerical, worst.numerical], rtol=1e-7)
    assert report.disagreeing == ("reverse vs numerical", "forward vs reverse"), report
    assert report.diagnosis.startswith("reverse mode (the VJP) is wrong"), report
    # Every other variable, conv_2/bias and conv_1 (whose gradients pass through the planted
    # layer's dJ/dx) included, is right.
    assert all(b.worst <= 1e-7 for b in report.blocks[1:]), report


@pytest.mark.parametrize("mode", ["directional", "sampled"])
def test_planted_conv_gradient_is_found_in_the_cheaper_modes(mode):
    x, y = _data()
    report = gradcheck.check_gradients(_cnn("average", _planted("one_component")), x, y, _xent(),
                                       mode=mode)
    assert report.verdict == "wrong" and report.blocks[0].name == "conv_2/kernel", report


def test_same_conv_with_its_gradient_right_is_correct():
    # The planted bug is the only cause of the "wrong" verdicts above.
    x, y = _data()
    report = gradcheck.check_gradients(_cnn("average", _planted("none")), x, y, _xent())
    assert report.verdict == "correct", str(report)


class L2Conv2D(keras.layers.Conv2D):
    """Any layer cloneable from its config is twinned: a Conv2D subclass with tfnet Dense's L2
    cost, (λ/2m) ‖W‖², m the batch size (the shape of tfnet's own convolution layer)."""

    def __init__(self, filters, kernel_size, l2=0.0, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.l2 = l2

    def call(self, inputs):
        m = tf.cast(tf.shape(inputs)[0], self.kernel.dtype)
        self.add_loss(self.l2 / (2.0 * m) * tf.reduce_sum(tf.square(self.kernel)))
        return super().call(inputs)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


def test_a_custom_conv_layer_cloned_from_its_config_keeps_its_l2_cost():
    x, y = _data()

    def with_l2(l2):
        return lambda filters, size, name: L2Conv2D(filters, size, l2=l2, name=name)

    report = gradcheck.check_gradients(_cnn("average", with_l2(L2)), x, y, _xent())
    without = gradcheck.check_gradients(_cnn("average", with_l2(0.0)), x, y, _xent(),
                                        mode="directional")
    assert report.verdict == "correct", str(report)
    kernel = _cnn("average", with_l2(L2)).get_layer("conv_2").kernel.numpy().astype(np.float64)
    np.testing.assert_allclose(report.cost - without.cost,
                               L2 / (2 * len(y)) * np.sum(kernel**2), rtol=1e-10)


class ConvBlock(keras.layers.Layer):
    """Conv2D → BatchNorm → ReLU as one layer that makes its two layers itself, without a dtype."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv = keras.layers.Conv2D(filters, 3, name="conv")
        self.norm = layers.BatchNorm(name="norm")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.norm.build(self.conv.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        return tf.nn.relu(self.norm(self.conv(inputs), training=training))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def test_the_layers_a_custom_layer_makes_itself_are_twinned_in_float64():
    # Left in float32, the block's convolution puts float32 round-off into J: the check then
    # called these right gradients "wrong" (2.7e-2).
    x, y = _data(side=6)
    keras.utils.set_random_seed(1)
    inputs = keras.Input(x.shape[1:])
    block = ConvBlock(3, name="block")(inputs)
    model = keras.Model(inputs, layers.Dense(CLASSES, name="logits")(keras.layers.Flatten()(block)))
    report = gradcheck.check_gradients(model, x, y, _xent())
    assert report.verdict == "correct", str(report)
    assert {"block/conv/kernel", "block/norm/gamma"} <= {b.name for b in report.blocks}, report
    assert model.get_layer("block").conv.kernel.dtype == "float32"  # the model's own: unchanged
