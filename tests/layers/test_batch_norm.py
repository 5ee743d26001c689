"""BatchNorm against keras.layers.BatchNormalization, a numpy reference and its own promises.

Expected numbers come from Keras' built-in layer (same momentum and ε), from the float64 numpy
equations of docs/methods.md §6 and §10, or from a single-device run of the same layer.
"""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfnet.layers import BatchNorm

# A sibling module: pytest puts this directory on sys.path (tests/ is not a package).
from batch_norm_reference import input_gamma_beta_gradients, numpy_batch_norm, random_batches

# (input shape, axis): Dense activations and NHWC images, channel axis last or not.
CASES = {
    "dense_last": ((16, 5), -1),
    "dense_axis0": ((6, 16), 0),
    "nhwc_last": ((4, 3, 3, 6), -1),
    "nhwc_axis1": ((4, 3, 3, 6), 1),
    "nhwc_axis3": ((4, 3, 3, 6), 3),
}
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}
# 0.9 forgets the start values (moving mean 0, variance 1) within the 50 steps; 0.99, the default
# of both layers, does not, so there the start values and the update's form are what is compared.
MOMENTA = {"momentum0.9": 0.9, "momentum0.99": 0.99}


def _compare_with_keras(shape, axis, dtype, momentum):
    # dtype given explicitly: Keras caches its global dtype policy at the first layer built, so
    # the float64 fixture (set_floatx) alone does not reach layers made later in the session.
    ours = BatchNorm(axis=axis, momentum=momentum, epsilon=1e-3, dtype=dtype)
    theirs = keras.layers.BatchNormalization(axis=axis, momentum=momentum, epsilon=1e-3, dtype=dtype)
    batches = random_batches(shape, 50, dtype)
    upstream = tf.constant(np.random.default_rng(1).standard_normal(shape).astype(dtype))
    ours.build(shape)
    theirs.build(shape)
    # Non-trivial γ, β so their gradients and the output scale are exercised.
    gamma = np.linspace(0.5, 2.0, shape[axis]).astype(dtype)
    beta = np.linspace(-1.0, 1.0, shape[axis]).astype(dtype)
    for layer in (ours, theirs):
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
    tol = TOLERANCE[dtype]
    for step, x in enumerate(batches, start=1):
        # Outputs at every training step; gradients (the slow part) every 10th step, in both modes.
        if step % 10:
            np.testing.assert_allclose(
                ours(x, training=True).numpy(), theirs(x, training=True).numpy(), rtol=tol, atol=tol
            )
            continue
        for training in (True, False):
            got = input_gamma_beta_gradients(ours, x, upstream, training)
            want = input_gamma_beta_gradients(theirs, x, upstream, training)
            for g, w in zip(got, want):
                np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(ours.moving_mean.numpy(), theirs.moving_mean.numpy(), rtol=tol)
    np.testing.assert_allclose(
        ours.moving_variance.numpy(), theirs.moving_variance.numpy(), rtol=tol
    )
    # The 50 steps moved the running mean from 0 towards the inputs' mean 5, to 5(1 − m^50) on
    # average (4.97 at m = 0.9, 1.97 at 0.99), give or take the batch means' noise.
    assert np.all(np.abs(ours.moving_mean.numpy() - 5.0 * (1 - momentum**50)) < 0.6)


@pytest.mark.parametrize("momentum", MOMENTA.values(), ids=MOMENTA.keys())
@pytest.mark.parametrize("shape,axis", CASES.values(), ids=CASES.keys())
def test_matches_keras_float32(shape, axis, momentum):
    _compare_with_keras(shape, axis, "float32", momentum)


@pytest.mark.parametrize("momentum", MOMENTA.values(), ids=MOMENTA.keys())
@pytest.mark.parametrize("shape,axis", CASES.values(), ids=CASES.keys())
def test_matches_keras_float64(shape, axis, momentum, float64):
    _compare_with_keras(shape, axis, "float64", momentum)


@pytest.mark.parametrize("bias_correction", [False, True])
@pytest.mark.parametrize("shape,axis", CASES.values(), ids=CASES.keys())
def test_matches_numpy_equations(shape, axis, bias_correction, float64):
    """Outputs and running averages equal docs/methods.md §6/§10 written in float64 numpy."""
    momentum, epsilon = 0.8, 1e-3
    layer = BatchNorm(
        axis=axis, momentum=momentum, epsilon=epsilon, bias_correction=bias_correction, dtype="float64"
    )
    gamma, beta = np.full(shape[axis], 1.5), np.full(shape[axis], -0.5)
    layer.build(shape)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    reduce = tuple(i for i in range(len(shape)) if i != axis % len(shape))
    moving_mean = np.zeros(shape[axis])
    moving_variance = np.zeros(shape[axis]) if bias_correction else np.ones(shape[axis])
    for t, z in enumerate(random_batches(shape, 5, "float64"), start=1):
        mu, sigma2 = z.mean(axis=reduce), z.var(axis=reduce)
        want = numpy_batch_norm(z, axis, gamma, beta, mu, sigma2, epsilon)
        np.testing.assert_allclose(layer(z, training=True).numpy(), want, rtol=1e-12, atol=1e-12)
        moving_mean = momentum * moving_mean + (1 - momentum) * mu
        moving_variance = momentum * moving_variance + (1 - momentum) * sigma2
        correction = 1 - momentum**t if bias_correction else 1.0
        want = numpy_batch_norm(
            z, axis, gamma, beta, moving_mean / correction, moving_variance / correction, epsilon
        )
        np.testing.assert_allclose(layer(z, training=False).numpy(), want, rtol=1e-12, atol=1e-12)


def test_training_none_and_frozen_layer_use_running_averages():
    """training=None means inference, and trainable=False freezes the layer into inference."""
    x = random_batches((16, 4), 1, "float32")[0]
    layer = BatchNorm(momentum=0.5)
    layer(x, training=True)
    before = layer.moving_mean.numpy()
    inference = layer(x, training=False).numpy()
    np.testing.assert_array_equal(layer(x).numpy(), inference)
    layer.trainable = False
    np.testing.assert_array_equal(layer(x, training=True).numpy(), inference)
    np.testing.assert_array_equal(layer.moving_mean.numpy(), before)
    assert len(layer.trainable_weights) == 0
    # Keras' frozen layer does the same.
    keras_layer = keras.layers.BatchNormalization(momentum=0.5)
    keras_layer(x, training=True)
    keras_layer.trainable = False
    np.testing.assert_allclose(keras_layer(x, training=True).numpy(), inference, atol=1e-6)


def test_bias_correction_fixes_early_inference():
    """30 steps, momentum 0.99, inputs with mean 5 and variance 9 (docs/methods.md §10).

    Uncorrected, the running mean is only 1 - 0.99**30 = 26% of the way from 0 to 5, so
    inference is far from batch-statistics outputs; corrected, it matches them closely.
    """
    rng = np.random.default_rng(0)
    batches = [(5.0 + 3.0 * rng.standard_normal((256, 4))).astype("float32") for _ in range(31)]
    corrected = BatchNorm(momentum=0.99, bias_correction=True)
    uncorrected = BatchNorm(momentum=0.99)
    for x in batches[:30]:
        corrected(x, training=True)
        uncorrected(x, training=True)
    assert int(corrected.step.numpy()) == 30
    test = batches[30]
    # What the inputs should normalise to: their own batch statistics, with γ=1, β=0.
    batch_statistics = (test - test.mean(axis=0)) / np.sqrt(test.var(axis=0) + 1e-3)
    # Mean absolute differences: the corrected averages differ from this batch's statistics only
    # by sampling noise (batch mean ±3/16, variance ±9%: about 0.05 on average).
    error_corrected = np.abs(corrected(test, training=False).numpy() - batch_statistics).mean()
    error_uncorrected = np.abs(uncorrected(test, training=False).numpy() - batch_statistics).mean()
    assert error_corrected < 0.1, error_corrected
    assert error_uncorrected > 1.0, error_uncorrected


def test_bias_correction_before_training_is_identity_normalisation():
    """At step 0 the corrected averages are undefined (0/0); the layer uses mean 0, variance 1."""
    x = np.array([[1.0, -2.0], [3.0, 4.0]], "float32")
    layer = BatchNorm(bias_correction=True)
    np.testing.assert_allclose(layer(x).numpy(), x / np.sqrt(1.0 + 1e-3), rtol=1e-6)


def _low_precision_batch_norm_by_hand(x, dtype):
    """μ, σ² and z_norm computed in ``dtype`` itself (numpy, that dtype's accumulation): what a
    layer that did not upcast would produce."""
    low = tf.as_dtype(dtype).as_numpy_dtype
    x = x.astype(low)
    with np.errstate(over="ignore"):  # float16: (x − μ)² sums past 65504 to inf
        mean = x.mean(axis=0, dtype=low)
        variance = np.square(x - mean).mean(axis=0, dtype=low)
        z_norm = (x - mean) / np.sqrt(variance + low(1e-3))
    return mean.astype("float32"), variance.astype("float32"), z_norm.astype("float32")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_normalised_in_float32(dtype):
    """Inputs whose squares overflow float16 (300**2 > 65504) normalise as in float32.

    The reference is the float32 layer on the same (rounded) inputs: the running averages must
    equal its to float32 round-off, and the outputs must be its outputs rounded to ``dtype``
    (relative error at most half that dtype's epsilon). The same steps computed in ``dtype``
    itself miss both bounds by far (planted contrast below): float16 overflows, bfloat16's
    8-bit mantissa rounds the mean of values near 300 by whole units.
    """
    momentum = 0.5  # the running averages move halfway to the batch statistics in one step
    x = (300.0 + 100.0 * np.random.default_rng(0).standard_normal((64, 3))).astype("float32")
    x_low = tf.cast(x, dtype)
    layer = BatchNorm(momentum=momentum, dtype=f"mixed_{dtype}")
    y = layer(x_low, training=True)
    assert y.dtype == dtype
    assert layer.moving_mean.dtype == "float32" and layer.moving_variance.dtype == "float32"
    x_rounded = tf.cast(x_low, "float32").numpy()
    reference_layer = BatchNorm(momentum=momentum)
    reference = reference_layer(x_rounded, training=True).numpy()

    half_epsilon = float(tf.experimental.numpy.finfo(dtype).eps) / 2
    output_tolerance = dict(rtol=half_epsilon, atol=1e-6)
    np.testing.assert_allclose(tf.cast(y, "float32").numpy(), reference, **output_tolerance)
    np.testing.assert_allclose(layer.moving_mean.numpy(), reference_layer.moving_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(
        layer.moving_variance.numpy(), reference_layer.moving_variance.numpy(), rtol=1e-6
    )

    # Planted contrast: the same computation in the low dtype fails these tolerances.
    mean, variance, z_norm = _low_precision_batch_norm_by_hand(x_rounded, dtype)
    assert not np.allclose(mean, x_rounded.mean(axis=0), rtol=1e-4, atol=0)
    assert not np.allclose(variance, x_rounded.var(axis=0), rtol=1e-4, atol=0)  # float16: inf
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(z_norm, reference, **output_tolerance)


def _masks(shape, steps):
    """(N, H, W) masks over (N, H, W, C) batches: about half the pixels of examples 0-3, and
    in the first step none of examples 4-7 (replica 1 then holds no unmasked value at all)."""
    rng = np.random.default_rng(2)
    masks = [rng.uniform(size=shape[:-1]) < 0.5 for _ in range(steps)]
    masks[0][4:] = False
    return masks


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("bias_correction", [False, True])
def test_synchronized_matches_single_device_on_full_batch(two_cpu_strategy, bias_correction, masked):
    """Two replicas with synchronized=True = one device on the concatenated batch.

    Outputs, running averages, and the gradients of the summed replica losses with respect to
    the inputs and γ are compared; with a mask, the global weighted statistics (the same two
    rounds on the masked sums and counts). The unsynchronized layer is a planted failure.
    """
    shape, steps = (8, 3, 3, 4), 3
    batches = random_batches(shape, steps, "float32")
    masks = _masks(shape, steps) if masked else [None] * steps
    upstream = np.random.default_rng(1).standard_normal(shape).astype("float32")

    def replicated(synchronized):
        with two_cpu_strategy.scope():
            layer = BatchNorm(momentum=0.9, bias_correction=bias_correction, synchronized=synchronized)
            layer.build(shape)

        def replica_step(x, w, mask):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True, mask=mask if masked else None)
                loss = tf.reduce_sum(y * w)
            dx, dgamma = tape.gradient(loss, [x, layer.gamma])
            # Sum γ's gradient over replicas, as an optimiser under the strategy would.
            dgamma = tf.distribute.get_replica_context().all_reduce("sum", dgamma)
            return y, dx, dgamma

        step = tf.function(lambda *args: two_cpu_strategy.run(replica_step, args))
        results = []
        for x, mask in zip(batches, masks):
            mask = np.ones(shape[:-1], bool) if mask is None else mask  # unused when unmasked

            # Replica r gets examples 4r .. 4r+3 of the batch, the upstream gradient and mask.
            def halves(ctx, x=x, mask=mask):
                r = ctx.replica_id_in_sync_group
                return tuple(tf.constant(a[4 * r:4 * r + 4]) for a in (x, upstream, mask))

            per_replica = two_cpu_strategy.experimental_distribute_values_from_function(halves)
            y, dx, dgamma = step(*per_replica)
            local = two_cpu_strategy.experimental_local_results
            results.append((
                np.concatenate([v.numpy() for v in local(y)]),
                np.concatenate([v.numpy() for v in local(dx)]),
                local(dgamma)[0].numpy(),
            ))
        return layer, results

    single = BatchNorm(momentum=0.9, bias_correction=bias_correction)
    single.build(shape)
    expected = []
    for x, mask in zip(batches, masks):
        expected.append(
            input_gamma_beta_gradients(single, x, tf.constant(upstream), True, mask)[:3])

    layer, results = replicated(synchronized=True)
    for (y, dx, dgamma), (want_y, want_dx, want_dgamma) in zip(results, expected):
        np.testing.assert_allclose(y, want_y.numpy(), atol=1e-5)
        np.testing.assert_allclose(dx, want_dx.numpy(), atol=1e-5)
        np.testing.assert_allclose(dgamma, want_dgamma.numpy(), rtol=1e-5, atol=1e-5)
    for variable in layer.non_trainable_weights:
        for copy in two_cpu_strategy.experimental_local_results(variable.value):
            np.testing.assert_allclose(copy.numpy(), getattr(single, variable.name).numpy(), rtol=1e-5)

    # Planted failure: per-replica statistics differ from the full-batch ones.
    _, unsynchronized = replicated(synchronized=False)
    assert np.abs(unsynchronized[0][0] - expected[0][0].numpy()).max() > 1e-2


def test_synchronized_fit_matches_single_device(two_cpu_strategy):
    """model.fit on two replicas with synchronized=True takes the single-device steps.

    With synchronized statistics every replica normalises with the global batch's μ and σ², so
    the summed replica gradients equal the full-batch gradient: weights and running averages
    after two SGD steps agree with the same model fitted on one device.
    """
    rng = np.random.default_rng(0)
    x = (2.0 + 3.0 * rng.standard_normal((16, 5))).astype("float32")
    y = rng.standard_normal((16, 1)).astype("float32")

    def fitted(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([
                keras.Input((5,)),
                keras.layers.Dense(4, use_bias=False),
                BatchNorm(momentum=0.9, bias_correction=True, synchronized=True),
                keras.layers.Dense(1),
            ])
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        return [w.numpy() for w in model.weights]

    for got, want in zip(fitted(two_cpu_strategy), fitted(tf.distribute.get_strategy())):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_config_round_trip():
    layer = BatchNorm(axis=1, momentum=0.9, epsilon=1e-4, bias_correction=True, synchronized=True, name="bn")
    config = layer.get_config()
    clone = BatchNorm.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, BatchNorm) and restored.get_config() == config


@pytest.fixture(scope="module")
def trained_model():
    """A fitted Dense-BatchNorm model (one plain, one bias-corrected BatchNorm) and its inputs."""
    seed = 0
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    z = keras.layers.Dense(8, use_bias=False)(inputs)
    z = BatchNorm(momentum=0.9, name="bn")(z)
    z = keras.layers.Activation("relu")(z)
    z = keras.layers.Dense(8, use_bias=False)(z)
    z = BatchNorm(momentum=0.9, bias_correction=True, name="bn_corrected")(z)
    model = keras.Model(inputs, keras.layers.Dense(2)(z))
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(seed)
    x = (2.0 + 3.0 * rng.standard_normal((64, 6))).astype("float32")
    model.fit(x, rng.standard_normal((64, 2)).astype("float32"), batch_size=16, epochs=2, verbose=0)
    return model, x


def test_running_averages_are_non_trainable_weights_updated_by_fit(trained_model):
    model, _ = trained_model
    names = [w.path for w in model.non_trainable_weights]
    assert sum("moving_mean" in n for n in names) == 2 and any(n.endswith("step") for n in names)
    corrected = model.get_layer("bn_corrected")
    assert int(corrected.step.numpy()) == 8  # 2 epochs x 4 batches
    assert np.abs(model.get_layer("bn").moving_mean.numpy()).max() > 0


def test_keras_file_round_trip(trained_model, tmp_path):
    model, x = trained_model
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded(x, training=False).numpy(), model(x, training=False).numpy())
    assert reloaded.get_layer("bn_corrected").bias_correction


_SERVE = """
import json, sys
import numpy as np
import tensorflow as tf
served = tf.saved_model.load(sys.argv[1])
x = np.load(sys.argv[2])
print(json.dumps([served.serve(x[i:i + 1]).numpy().tolist() for i in range(len(x))]))
"""


def test_exported_savedmodel_serves_single_examples_in_fresh_process(trained_model, tmp_path):
    """model.export -> tf.saved_model.load in a new Python process, one example at a time.

    Single examples have no batch statistics: equal outputs show the running averages (and the
    bias-correction step) are in the SavedModel.
    """
    model, x = trained_model
    path = str(tmp_path / "exported")
    model.export(path, verbose=False)
    x = x[:4]
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "-c", _SERVE, path, str(tmp_path / "x.npy")],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )
    served = np.array(json.loads(result.stdout.strip().splitlines()[-1]))[:, 0, :]
    np.testing.assert_allclose(served, model(x, training=False).numpy(), rtol=1e-6, atol=1e-6)
    # Planted contrast: batch statistics of a 4-example batch give different outputs (on a copy,
    # since a training call would move the shared model's running averages).
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    assert np.abs(served - copy(x, training=True).numpy()).max() > 1e-3


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"momentum": 1.0}, "`momentum` must be in [0, 1). Received: momentum=1.0"),
        ({"momentum": -0.1}, "`momentum` must be in [0, 1). Received: momentum=-0.1"),
        ({"epsilon": 0.0}, "`epsilon` must be > 0. Received: epsilon=0.0"),
        ({"axis": 1.5}, "`axis` must be an int. Received: axis=1.5"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        BatchNorm(**kwargs)


def test_axis_out_of_range():
    with pytest.raises(ValueError, match=r"`axis` must be in \[-2, 2\).*Received: axis=2"):
        BatchNorm(axis=2)(np.zeros((3, 4), "float32"))
