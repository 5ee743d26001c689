"""A visual check of the augmentations: a grid of training images and augmented versions of them.

Row ``i`` shows training image ``i`` and then ``num_versions`` augmentations of it; version ``k``
of the whole batch is ``augment(images, (seed, k))``, so every cell has its own draw and the grid is
the same on every run. ``write_png`` draws it with matplotlib,
``write_tensorboard`` logs the same grid as one ``tf.summary.image``.
"""

import os

import numpy as np
import tensorflow as tf

from tfnet import plotting


def augmented_versions(images, augment, num_versions, seed=0):
    """``[N, 1 + num_versions, H, W, C]``: each image, then its ``num_versions`` augmentations.

    Args:
      images: ``[N, H, W, C]`` float pixel values in [0, 255].
      augment: a function from ``tfnet.augment.build``.
      num_versions: augmented versions per image, >= 1.
      seed: the first half of every version's seed pair. Default 0.
    """
    if num_versions < 1:
        raise ValueError(f"`num_versions` must be >= 1. Received: num_versions={num_versions}")
    images = tf.convert_to_tensor(images, tf.float32)
    versions = [images] + [augment(images, tf.constant([seed, k], tf.int64))
                           for k in range(1, num_versions + 1)]
    return tf.stack(versions, axis=1).numpy()


def tile(versions):
    """Lays ``[N, V, H, W, C]`` out as one ``[N H, V W, C]`` uint8 image, one row per image."""
    n, v, h, w, c = versions.shape
    grid = versions.transpose(0, 2, 1, 3, 4).reshape(n * h, v * w, c)
    return np.clip(np.round(grid), 0, 255).astype(np.uint8)


def write_png(versions, path, title=""):
    """Draws ``[N, V, H, W, C]`` as an N × V grid of panels (first column: the originals)."""
    plt = plotting.pyplot()
    n, v, _, _, c = versions.shape
    figure, axes = plt.subplots(n, v, figsize=(1.4 * v, 1.4 * n + 0.4), squeeze=False)
    for row in range(n):
        for column in range(v):
            panel = np.clip(versions[row, column], 0, 255).astype(np.uint8)
            axis = axes[row, column]
            if c == 1:
                axis.imshow(panel[..., 0], cmap="gray", vmin=0, vmax=255)
            else:
                axis.imshow(panel)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title("original" if column == 0 else f"augmented {column}", fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_tensorboard(versions, logdir, name="augmentations", description=""):
    """Logs the grid of ``tile(versions)`` as one image summary under ``logdir``."""
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        tf.summary.image(name, tile(versions)[np.newaxis], step=0, description=description)
    writer.close()
    return logdir
