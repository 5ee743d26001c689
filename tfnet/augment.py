"""Data augmentation for the training split: seeded, stateless image transforms.

``build(names, input_shape, **options)`` returns ``augment(images, seed) -> images``, which
the training loop (``tfnet.training.loop``) applies to each training mini-batch only
(docs/methods.md §3). ``images`` is one image (H, W, C) or a batch (B, H, W, C) of float pixel values
in [0, 255]; ``seed`` is an int ``[2]`` tensor. Every random number is a stateless draw
(``tf.random.stateless_uniform``) keyed by ``seed``, so a run with a fixed seed sees the same
augmented examples every time, whatever the number of parallel map calls. A batch draws one
parameter per example from its one seed (a ``[B]`` draw), so augmenting a batch costs one op per
transform, not one per example: the batched call is what keeps augmentation cheap beside the
training step (see ``benchmarks/input.py``). A single image is the batch of one.

Each transform draws from its own sub-seed, ``stateless_fold_in(seed, i)`` with ``i`` its position
in ``AUGMENTATIONS``, so one transform's draws do not change when others are added. The selected
transforms run in ``AUGMENTATIONS`` order whatever order they were named in: first the geometric
ones (flip, crop, rotate, zoom), composed into one projective matrix per example and applied with
one bilinear resample (one interpolation instead of one per transform; flip and crop alone move
whole pixels and use two one-hot selection matmuls instead), then the photometric ones.
Every transform keeps the shape, the dtype and the [0, 255] range: areas moved in from outside the
image are filled with 0 and the photometric transforms clip to [0, 255].

Keras preprocessing layers (``RandomFlip``, ``RandomRotation``, ...) are not used: they draw from
a stateful ``SeedGenerator``, not from a seed given per call. Nothing here is part of the exported
serving model.
"""

import functools
import math
from typing import Callable, NamedTuple

import tensorflow as tf

PIXEL_MAX = 255.0
# Every draw names its algorithm: the default ("auto_select") is several times slower inside an
# XLA-compiled loop on the CPU, and Philox is available on every device.
_ALGORITHM = "philox"


class Augmentation(NamedTuple):
    """One registry entry.

    A geometric ``fn(batch_size, height, width, seed, options)`` returns a ``[B, 3, 3]`` matrix
    mapping output pixel coordinates (x, y, 1) to the input coordinates they sample; a
    photometric ``fn(images, seed, options)`` returns the transformed ``[B, H, W, C]`` images.
    """

    description: str
    fn: Callable
    geometric: bool
    colour_only: bool


# Option name -> (default, predicate, rule as it reads in the error message, help).
OPTIONS = {
    "crop_padding": (4, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1",
                     "crop: zero padding in pixels, the largest shift"),
    "max_rotation": (15.0, lambda v: 0 < v <= 180, "in (0, 180] (degrees)",
                     "rotate: largest angle in degrees"),
    "max_zoom": (0.1, lambda v: 0 < v < 1, "in (0, 1)",
                 "zoom: largest relative change of scale"),
    "max_brightness": (0.2, lambda v: 0 < v <= 1, "in (0, 1] (a fraction of 255)",
                       "brightness: largest shift, as a fraction of 255"),
    "max_contrast": (0.2, lambda v: 0 < v < 1, "in (0, 1)",
                     "contrast: largest relative change of the factor"),
    "max_saturation": (0.3, lambda v: 0 < v < 1, "in (0, 1)",
                       "saturation: largest relative change of the factor"),
}


def _uniform(batch_size, seed, limit, centre=0.0):
    """A ``[B]`` draw, uniform in ``[centre - limit, centre + limit)``."""
    return tf.random.stateless_uniform(
        [batch_size], seed, minval=centre - limit, maxval=centre + limit, alg=_ALGORITHM
    )


def _about_centre(linear, height, width):
    """``[B, 3, 3]`` matrices sampling input ``c + linear (p - c)`` for output point ``p``.

    ``linear`` is ``[B, 2, 2]``; ``c = ((W - 1) / 2, (H - 1) / 2)`` is the image centre.
    """
    centre = tf.constant([(width - 1) / 2.0, (height - 1) / 2.0])
    shift = centre - tf.linalg.matvec(linear, centre)  # [B, 2]
    top = tf.concat([linear, shift[:, :, tf.newaxis]], axis=2)  # [B, 2, 3]
    bottom = tf.broadcast_to(tf.constant([[[0.0, 0.0, 1.0]]]), [tf.shape(linear)[0], 1, 3])
    return tf.concat([top, bottom], axis=1)


def _flip(batch_size, height, width, seed, options):
    del options  # A flip has no parameter.
    # Mirrored example: input x = (W - 1) - x, i.e. sign -1 about the centre.
    sign = tf.where(tf.random.stateless_uniform([batch_size], seed, alg=_ALGORITHM) < 0.5, -1.0, 1.0)
    zeros, ones = tf.zeros_like(sign), tf.ones_like(sign)
    linear = tf.reshape(tf.stack([sign, zeros, zeros, ones], axis=1), [-1, 2, 2])
    return _about_centre(linear, height, width)


def _crop(batch_size, height, width, seed, options):
    # Zero-padding p pixels on every side and cutting an (H, W) window at a random offset in
    # [0, 2p]^2 (the CIFAR recipe, He et al. 2016) equals sampling input (x + dx, y + dy) with
    # integer dx, dy uniform in [-p, p] and 0 outside the image.
    p = options["crop_padding"]
    shift = tf.random.stateless_uniform([batch_size, 2], seed, minval=-p, maxval=p + 1, alg=_ALGORITHM,
                                        dtype=tf.int32)
    eye = tf.eye(2, batch_shape=[batch_size])
    top = tf.concat([eye, tf.cast(shift, tf.float32)[:, :, tf.newaxis]], axis=2)
    bottom = tf.broadcast_to(tf.constant([[[0.0, 0.0, 1.0]]]), [batch_size, 1, 3])
    return tf.concat([top, bottom], axis=1)


def _rotate(batch_size, height, width, seed, options):
    # Angle from +x towards +y: clockwise as an image is displayed (rows run downwards).
    angle = _uniform(batch_size, seed, options["max_rotation"] * math.pi / 180.0)
    cos, sin = tf.cos(angle), tf.sin(angle)
    linear = tf.reshape(tf.stack([cos, -sin, sin, cos], axis=1), [-1, 2, 2])
    return _about_centre(linear, height, width)


def _zoom(batch_size, height, width, seed, options):
    # Zoom factor s: output p samples c + (p - c) / s, so s > 1 enlarges the content.
    scale = _uniform(batch_size, seed, options["max_zoom"], centre=1.0)
    linear = tf.eye(2, batch_shape=[batch_size]) / scale[:, tf.newaxis, tf.newaxis]
    return _about_centre(linear, height, width)


def _brightness(images, seed, options):
    delta = _uniform(tf.shape(images)[0], seed, options["max_brightness"] * PIXEL_MAX)
    return tf.clip_by_value(images + delta[:, None, None, None], 0.0, PIXEL_MAX)


def _contrast(images, seed, options):
    # tf.image.adjust_contrast's rule, with one factor per example.
    factor = _uniform(tf.shape(images)[0], seed, options["max_contrast"], centre=1.0)
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)  # [B, 1, 1, C]
    images = (images - mean) * factor[:, None, None, None] + mean
    return tf.clip_by_value(images, 0.0, PIXEL_MAX)


def _saturation(images, seed, options):
    # tf.image.adjust_saturation's rule (HSV saturation scaled, clipped to [0, 1]) with one
    # factor per example; rgb_to_hsv expects values in [0, 1].
    factor = _uniform(tf.shape(images)[0], seed, options["max_saturation"], centre=1.0)
    hue, saturation, value = tf.unstack(tf.image.rgb_to_hsv(images / PIXEL_MAX), axis=-1)
    saturation = tf.clip_by_value(saturation * factor[:, None, None], 0.0, 1.0)
    images = tf.image.hsv_to_rgb(tf.stack([hue, saturation, value], axis=-1)) * PIXEL_MAX
    return tf.clip_by_value(images, 0.0, PIXEL_MAX)


AUGMENTATIONS = {
    "flip": Augmentation(
        "random left-right mirror (p = 0.5); never on unless named: it changes what a digit means",
        _flip, geometric=True, colour_only=False,
    ),
    "crop": Augmentation(
        "zero-pad crop_padding (4) px and crop back at a random offset: a shift of up to 4 px",
        _crop, geometric=True, colour_only=False,
    ),
    "rotate": Augmentation(
        "rotate about the centre by a uniform angle in +-max_rotation (15) degrees",
        _rotate, geometric=True, colour_only=False,
    ),
    "zoom": Augmentation(
        "zoom about the centre by a uniform factor in [1 - max_zoom, 1 + max_zoom] (0.1)",
        _zoom, geometric=True, colour_only=False,
    ),
    "brightness": Augmentation(
        "add a uniform delta in +-max_brightness (0.2) x 255 to every pixel, clip to [0, 255]",
        _brightness, geometric=False, colour_only=False,
    ),
    "contrast": Augmentation(
        "per channel (x - mean) f + mean, f uniform in 1 +- max_contrast (0.2), clip",
        _contrast, geometric=False, colour_only=False,
    ),
    "saturation": Augmentation(
        "scale HSV saturation by a uniform factor in 1 +- max_saturation (0.3); RGB only",
        _saturation, geometric=False, colour_only=True,
    ),
}

NAMES = tuple(AUGMENTATIONS)

# Transforms resampled with ImageProjectiveTransformV3 (bilinear): it has no XLA kernel.
_PROJECTIVE = frozenset({"rotate", "zoom"})


def compiles_with_xla(names):
    """Whether XLA can compile ``build(names, ...)``: not when it rotates or zooms, whose
    bilinear resample (``ImageProjectiveTransformV3``) has no XLA kernel."""
    return not _PROJECTIVE & set(_parse_names(names))


def describe():
    """Help text for an ``--augment`` flag: one line per augmentation, then the options."""
    lines = ["Comma-separated training augmentations (train split only; default none):"]
    lines += [f"  {name}: {entry.description}" for name, entry in AUGMENTATIONS.items()]
    lines += ["Options (keyword arguments of tfnet.augment.build):"]
    lines += [f"  {key}={default}: {help}" for key, (default, _, _, help) in OPTIONS.items()]
    return "\n".join(lines)


def _parse_names(names):
    if isinstance(names, str):
        names = names.split(",")
    names = [name.strip() for name in names if name.strip()]
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"`names` must be among {', '.join(NAMES)}. Received: names={names} "
            f"(unknown: {', '.join(unknown)})"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(
            f"`names` must name each augmentation once. Received: names={names} "
            f"(repeated: {', '.join(repeated)})"
        )
    return names


def _parse_options(options):
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(
            f"augmentation options must be among {', '.join(OPTIONS)}. "
            f"Received: {', '.join(f'{key}={options[key]!r}' for key in unknown)}"
        )
    for key, value in options.items():
        _, valid, rule, _ = OPTIONS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not valid(value):
            raise ValueError(f"`{key}` must be {rule}. Received: {key}={value!r}")
    return {key: options.get(key, entry[0]) for key, entry in OPTIONS.items()}


def _resample(images, matrices, interpolation):
    """Samples ``images`` [B, H, W, C] at ``matrices`` [B, 3, 3] (output -> input), 0 outside."""
    # ImageProjectiveTransformV3 takes rows [a0, a1, a2, b0, b1, b2, c0, c1] of each matrix
    # (its last entry taken as 1; ours always is).
    rows = tf.reshape(matrices, [-1, 9])[:, :8]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=rows,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation=interpolation,
    )


def _resample_axis_aligned(images, matrices):
    """``_resample`` (nearest) for matrices that only mirror and shift by whole pixels.

    Flip and crop make such matrices. Such a matrix samples input column ``a0 x + a2`` and row
    ``b1 y + b2`` (``a0, b1 = ±1``, integer ``a2, b2``), so each output image is
    ``R · image · Cᵀ`` per channel, with ``R`` [H, H] and ``C`` [W, W] one-hot selection
    matrices (``R[y, b1 y + b2] = 1``; an all-zero row where the sampled row is outside the
    image, which gives the 0 fill). Two small batched matmuls replace the per-value projective
    sample: equal results (one 1.0 times the pixel, the rest 0.0 times finite pixels), and on
    the CPU about 2× faster than gathering rows and columns, 3× faster than
    ``ImageProjectiveTransformV3`` on 28×28 digits.
    """
    height, width = images.shape[1], images.shape[2]
    cols = matrices[:, 0, 0:1] * tf.range(width, dtype=tf.float32) + matrices[:, 0, 2:3]
    rows = matrices[:, 1, 1:2] * tf.range(height, dtype=tf.float32) + matrices[:, 1, 2:3]
    # one_hot gives an all-zero row for an index outside [0, size): the 0 fill.
    select_rows = tf.one_hot(tf.cast(tf.round(rows), tf.int32), height, dtype=images.dtype)
    select_cols = tf.one_hot(tf.cast(tf.round(cols), tf.int32), width, dtype=images.dtype)
    channels_first = tf.transpose(images, [0, 3, 1, 2])  # [B, C, H, W]
    moved = tf.matmul(tf.matmul(select_rows[:, tf.newaxis], channels_first),
                      select_cols[:, tf.newaxis], transpose_b=True)  # [B, C, H, W]
    return tf.transpose(moved, [0, 2, 3, 1])


def build(names, input_shape, **options):
    """Builds the training augmentation ``augment(images, seed) -> images``.

    Args:
      names: the augmentations to apply, a sequence of ``NAMES`` or one comma-separated string
        (``"crop,rotate"``); they run in ``AUGMENTATIONS`` order whatever order they are named in.
        Empty (``""``, ``[]``): no augmentation.
      input_shape: ``(height, width, channels)`` of one example.
      **options: transform parameters, each defaulting to ``OPTIONS[name][0]``:
        ``crop_padding=4`` (pixels), ``max_rotation=15.0`` (degrees), ``max_zoom=0.1``,
        ``max_brightness=0.2`` (fraction of 255), ``max_contrast=0.2``, ``max_saturation=0.3``.
        Options of transforms that are not selected are checked and otherwise ignored, so one
        set of flags can serve every choice of ``names``.

    Returns:
      ``augment(images, seed)``: ``images`` a float tensor of shape ``input_shape`` or
      ``(B,) + input_shape`` with values in [0, 255], ``seed`` an int32/int64 ``[2]`` tensor;
      returns images of the same shape, dtype and range, a deterministic function of
      (images, seed). ``None`` when ``names`` is empty: no augmentation at all.

    Raises:
      ValueError: for an unknown or repeated name, an ``input_shape`` that is not an image, a
        colour-only transform (``saturation``) on images without 3 channels, an unknown option
        or an option out of its range; ``augment`` raises it for images of another shape or a
        non-float dtype.
    """
    names = _parse_names(names)
    options = _parse_options(options)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or not all(isinstance(n, int) and n > 0 for n in input_shape):
        raise ValueError(
            "`input_shape` must be (height, width, channels) of positive integers to augment "
            f"images. Received: input_shape={input_shape}"
        )
    for name in names:
        if AUGMENTATIONS[name].colour_only and input_shape[2] != 3:
            raise ValueError(
                f"`{name}` needs RGB images (3 channels). Received: names={names}, "
                f"input_shape={input_shape}"
            )
    if not names:
        return None
    height, width = input_shape[:2]
    # (registry position, entry) in registry order: the position keys the sub-seed.
    steps = [(i, entry) for i, (name, entry) in enumerate(AUGMENTATIONS.items()) if name in names]
    # Flips and integer shifts alone move whole rows and columns: two selection matmuls replace
    # the per-value projective resample (the costliest op of flip,crop on the CPU).
    if _PROJECTIVE & set(names):
        resample = functools.partial(_resample, interpolation="BILINEAR")
    else:
        resample = _resample_axis_aligned

    def augment(images, seed):
        images = tf.convert_to_tensor(images)
        single = images.shape.rank == len(input_shape)
        shape = images.shape if single else images.shape[1:]
        if (images.shape.rank is None or not images.dtype.is_floating
                or not shape.is_compatible_with(input_shape)):
            raise ValueError(
                f"`images` must be a float tensor of shape {input_shape} or (batch,) + "
                f"{input_shape}. Received: images.shape={images.shape}, "
                f"images.dtype={images.dtype.name}"
            )
        if single:
            images = images[tf.newaxis]
        batch_size = tf.shape(images)[0]
        matrices = None
        for index, entry in steps:
            sub_seed = tf.random.experimental.stateless_fold_in(seed, index, alg=_ALGORITHM)
            if entry.geometric:
                matrix = entry.fn(batch_size, height, width, sub_seed, options)
                # Output -> input maps compose in application order: M = A_1 A_2 ... A_k.
                matrices = matrix if matrices is None else tf.matmul(matrices, matrix)
            else:
                if matrices is not None:
                    images = resample(images, matrices)
                    matrices = None
                images = entry.fn(images, sub_seed, options)
        if matrices is not None:
            images = resample(images, matrices)
        return images[0] if single else images

    return augment
