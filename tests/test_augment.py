"""Tests of tfnet.augment: each transform against a numpy reference of what it should do.

Expected values come from numpy: np.fliplr, np.pad + slicing (the pad-and-crop recipe), np.rot90,
the contrast rule (x - mean) f + mean, and HSV's value = max(r, g, b) being kept by a saturation
change. Nothing is compared with numbers produced by the code under test.
"""

import numpy as np
import pytest
import tensorflow as tf

from tfnet import augment, data

GREY = (28, 28, 1)
RGB = (32, 32, 3)
# Strong settings so that the range checks bite: without clipping, brightness ±255 and contrast
# ×1.9 leave [0, 255] on almost every image.
HARSH = dict(max_brightness=1.0, max_contrast=0.9, max_saturation=0.9, max_zoom=0.5,
             max_rotation=180.0, crop_padding=8)


def images(shape, batch=16, low=0.0, high=255.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, (batch,) + shape).astype(np.float32)
    if low == 0.0 and high == 255.0:
        x[:, ::3] = 0.0  # Exact extremes, where range bugs show first.
        x[:, 1::5] = 255.0
    return x


def run(names, x, seed=(3, 4), shape=None, **options):
    fn = augment.build(names, shape or x.shape[1:], **options)
    return fn(tf.constant(x), tf.constant(seed, tf.int64)).numpy()


def shapes_for(name):
    return [RGB] if augment.AUGMENTATIONS[name].colour_only else [GREY, RGB]


CASES = [(name, shape) for name in augment.NAMES for shape in shapes_for(name)]


@pytest.mark.parametrize("name,shape", CASES, ids=[f"{n}-{s[2]}ch" for n, s in CASES])
def test_every_transform_keeps_shape_dtype_and_range_and_changes_images(name, shape):
    x = images(shape)
    for options in ({}, HARSH):
        out = run(name, x, **options)
        assert out.shape == x.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 255.0
        assert not np.array_equal(out, x)  # not a no-op
        single = augment.build(name, shape, **options)(tf.constant(x[0]), tf.constant([3, 4]))
        assert single.shape == shape and single.dtype == tf.float32


def test_all_transforms_together_keep_shape_dtype_and_range():
    x = images(RGB)
    out = run(",".join(augment.NAMES), x, **HARSH)
    assert out.shape == x.shape and out.min() >= 0.0 and out.max() <= 255.0


def test_flip_mirrors_some_examples_and_leaves_the_others():
    x = images(GREY, batch=32)
    out = run("flip", x)
    flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x)]
    kept = [np.array_equal(o, i) for o, i in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert any(flipped) and any(kept)


def test_crop_is_a_window_of_the_zero_padded_image():
    p, (h, w, _) = 3, GREY
    x = images(GREY, batch=32)
    out = run("crop", x, crop_padding=p)
    offsets = []
    for o, i in zip(out, x):
        padded = np.pad(i, [(p, p), (p, p), (0, 0)])
        found = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                 if np.array_equal(o, padded[dy:dy + h, dx:dx + w])]
        assert found, "output is no window of the padded image"
        offsets.append(found[0])
    assert len(set(offsets)) > 5  # the offset is drawn per example


def test_resample_rotates_by_the_matrix_angle():
    # 90° from +x towards +y: output (x, y) samples input (c + R (p - c)), which is np.rot90.
    x = images((7, 7, 2), batch=2)
    rotation = tf.constant([[[0.0, -1.0], [1.0, 0.0]]] * 2)
    out = augment._resample(tf.constant(x), augment._about_centre(rotation, 7, 7), "BILINEAR")
    np.testing.assert_allclose(out.numpy(), np.rot90(x, k=1, axes=(1, 2)), atol=1e-4)


def test_resample_zooms_about_the_centre_and_fills_zero():
    # Scale 1/2 on a 5×5 image: output (x, y) samples input (2x − 2, 2y − 2); outside reads 0.
    x = images((5, 5, 1), batch=1, low=1.0)
    half = tf.constant([[[2.0, 0.0], [0.0, 2.0]]])
    out = augment._resample(tf.constant(x), augment._about_centre(half, 5, 5), "BILINEAR").numpy()
    expected = np.zeros_like(x)
    expected[0, 1:4, 1:4] = x[0, 0:5:2, 0:5:2]
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_axis_aligned_resample_equals_the_projective_kernel():
    # Reference: TF's ImageProjectiveTransformV3 with nearest sampling (what flip and crop used
    # before the fast path) on mirrors and integer shifts, one past the image edge.
    x = images((6, 5, 3), batch=4, low=1.0)
    linear = tf.constant([[[-1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]] * 2)
    matrices = augment._about_centre(linear, 6, 5).numpy()
    matrices[:, :2, 2] += np.array([[2.0, -1.0], [-3.0, 4.0], [0.0, 0.0], [7.0, -9.0]])
    out = augment._resample_axis_aligned(tf.constant(x), tf.constant(matrices)).numpy()
    expected = augment._resample(tf.constant(x), tf.constant(matrices), "NEAREST").numpy()
    np.testing.assert_array_equal(out, expected)
    assert (out[3] == 0).all() and (out[:3] != 0).any()


def test_rotate_keeps_the_centre_pixel_and_stays_within_its_angle():
    # A bright bar along +x from the centre of a 31×31 image; after a rotation by at most 15°
    # its far end (15 px out) moves by at most 15 sin 15° ≈ 3.9 px up or down, plus one pixel of
    # bilinear spread: rows 10-20 at most.
    x = np.zeros((16, 31, 31, 1), np.float32)
    x[:, 15, 15:] = 255.0
    out = run("rotate", x, max_rotation=15.0)
    np.testing.assert_allclose(out[:, 15, 15], 255.0, atol=1e-3)
    assert out[:, :10, 24:].max() < 1e-3 and out[:, 21:, 24:].max() < 1e-3
    assert not np.allclose(out, x)
    assert ((out > 1.0) & (out < 254.0)).any()  # bilinear blending, not nearest-pixel steps


def test_brightness_adds_one_delta_per_example_within_its_bound():
    x = images(GREY, low=60.0, high=190.0)  # ±0.2 × 255 = ±51 never clips here
    delta = run("brightness", x, max_brightness=0.2) - x
    np.testing.assert_allclose(delta, delta[:, :1, :1, :1] * np.ones_like(delta), atol=1e-3)
    assert np.abs(delta).max() <= 51.0 + 1e-3
    assert len(np.unique(np.round(delta[:, 0, 0, 0], 3))) == len(x)


def test_contrast_scales_about_each_channel_mean():
    x = images(RGB, low=100.0, high=155.0)  # factors in [0.8, 1.2] never clip here
    out = run("contrast", x, max_contrast=0.2)
    mean = x.mean(axis=(1, 2), keepdims=True)
    factor = (out - mean)[:, 0, 0, 0] / (x - mean)[:, 0, 0, 0]
    np.testing.assert_allclose(out, (x - mean) * factor[:, None, None, None] + mean, atol=1e-2)
    assert np.all((factor >= 0.8 - 1e-4) & (factor <= 1.2 + 1e-4))
    assert factor.std() > 0.01


def test_saturation_keeps_grey_pixels_and_each_pixel_value():
    x = images(RGB, low=0.0, high=254.0)
    x[:4] = x[:4, :, :, :1]  # four grey images: r = g = b
    out = run("saturation", x)
    np.testing.assert_allclose(out[:4], x[:4], atol=1e-2)
    np.testing.assert_allclose(out.max(axis=-1), x.max(axis=-1), atol=1e-2)  # HSV value kept
    assert not np.allclose(out[4:], x[4:], atol=1.0)


def test_a_fixed_seed_repeats_and_another_seed_differs():
    x = images(RGB)
    names = "flip,crop,rotate,brightness,contrast"
    np.testing.assert_array_equal(run(names, x, seed=(1, 2)), run(names, x, seed=(1, 2)))
    assert not np.allclose(run(names, x, seed=(1, 2)), run(names, x, seed=(1, 3)))


def test_transforms_run_in_registry_order_whatever_the_order_named():
    x = images(GREY)
    np.testing.assert_array_equal(run("rotate,crop,flip", x), run(["flip", "crop", "rotate"], x))


def test_adding_a_transform_leaves_the_others_draws_unchanged():
    # A left-right symmetric image is its own mirror, so a flip changes nothing: brightness must
    # then draw the same deltas with or without flip selected (its sub-seed is its own).
    x = images(GREY, low=60.0, high=190.0)
    x = np.concatenate([x[:, :, :14], x[:, :, :14][:, :, ::-1]], axis=2)
    np.testing.assert_array_equal(run("brightness", x), run("flip,brightness", x))


def test_no_names_means_no_augmentation():
    assert augment.build("", GREY) is None
    assert augment.build([], GREY) is None


def _loop_batches(examples, seed, augment_fn, steps=4):
    """The (features, labels) of the first ``steps`` mini-batches the training loop feeds."""
    from tfnet.training.batches import MemoryBatches
    from tfnet.training.loop import TrainLoop

    seen = []

    def record(features, labels):
        seen.append((features.numpy(), labels.numpy()))
        return np.float32(0)

    def train_step(take):
        features, labels = take(tf.constant(0), 1)
        return tf.reshape(tf.py_function(record, [features, labels], tf.float32), []), tf.constant(True)

    loop = TrainLoop(train_step, MemoryBatches(examples, seed, 64), seed=seed,
                     position=tf.Variable(0, dtype=tf.int64), augment=augment_fn)
    loop(steps)
    return seen


def test_the_loop_augments_images_keeps_labels_and_repeats_with_the_seed(shared_tfds):
    splits = data.load("mnist_t10k", data_dir=shared_tfds)
    train = data.Examples(*(t[:256] for t in data.in_memory(splits.train)))
    fn = augment.build("crop,rotate", splits.info.input_shape)
    plain, first, again = (_loop_batches(train, 1, None), _loop_batches(train, 1, fn),
                           _loop_batches(train, 1, fn))
    for (x0, y0), (x1, y1), (x2, y2) in zip(plain, first, again, strict=True):
        np.testing.assert_array_equal(y1, y0)  # same order, labels untouched
        assert not np.array_equal(x1, x0)  # images augmented
        np.testing.assert_array_equal(x2, x1)  # and identically on a second run
        assert x1.min() >= 0.0 and x1.max() <= 255.0
    other = _loop_batches(train, 2, fn)
    assert not np.array_equal(np.concatenate([x for x, _ in other]),
                              np.concatenate([x for x, _ in first]))


@pytest.mark.parametrize(
    "names,shape,options,message",
    [
        ("flip,blur", GREY, {}, r"`names` must be among flip, crop, .*Received: names=\['flip', 'blur'\] \(unknown: blur\)"),
        ("crop,crop", GREY, {}, r"`names` must name each augmentation once.*\(repeated: crop\)"),
        ("crop", (784,), {}, r"`input_shape` must be \(height, width, channels\).*Received: input_shape=\(784,\)"),
        ("saturation", GREY, {}, r"`saturation` needs RGB images \(3 channels\).*input_shape=\(28, 28, 1\)"),
        ("crop", GREY, {"crop_size": 3}, r"augmentation options must be among crop_padding, .*Received: crop_size=3"),
        ("crop", GREY, {"crop_padding": 0}, r"`crop_padding` must be an integer >= 1. Received: crop_padding=0"),
        ("crop", GREY, {"crop_padding": 2.5}, r"`crop_padding` must be an integer >= 1. Received: crop_padding=2.5"),
        ("rotate", GREY, {"max_rotation": 270}, r"`max_rotation` must be in \(0, 180\] \(degrees\). Received: max_rotation=270"),
        ("zoom", GREY, {"max_zoom": 1.0}, r"`max_zoom` must be in \(0, 1\). Received: max_zoom=1.0"),
        ("brightness", GREY, {"max_brightness": -0.1}, r"`max_brightness` must be in \(0, 1\].*Received: max_brightness=-0.1"),
        ("contrast", GREY, {"max_contrast": "0.2"}, r"`max_contrast` must be in \(0, 1\). Received: max_contrast='0.2'"),
        ("saturation", RGB, {"max_saturation": True}, r"`max_saturation` must be in \(0, 1\). Received: max_saturation=True"),
    ],
)
def test_bad_arguments_are_refused_with_the_rule_and_the_value(names, shape, options, message):
    with pytest.raises(ValueError, match=message):
        augment.build(names, shape, **options)


def test_images_of_another_shape_or_an_integer_dtype_are_refused():
    fn = augment.build("crop", GREY)
    with pytest.raises(ValueError, match=r"`images` must be a float tensor of shape \(28, 28, 1\).*images.shape=\(32, 32, 3\)"):
        fn(tf.zeros(RGB), tf.constant([0, 0]))
    with pytest.raises(ValueError, match=r"images.dtype=uint8"):
        fn(tf.zeros(GREY, tf.uint8), tf.constant([0, 0]))


def test_describe_lists_every_augmentation_and_option_on_one_line_each():
    lines = augment.describe().splitlines()
    for name, entry in augment.AUGMENTATIONS.items():
        assert f"  {name}: {entry.description}" in lines
    for key, (default, *_) in augment.OPTIONS.items():
        assert any(line.startswith(f"  {key}={default}: ") for line in lines)
