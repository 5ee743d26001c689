"""Tests of tfnet.augment_preview: the grid's layout, the PNG and the TensorBoard image."""


import numpy as np
import pytest
import tensorflow as tf
from helpers import plugin_tags, run_script
from tensorboard.backend.event_processing import event_accumulator

from tfnet import augment, augment_preview


@pytest.fixture
def versions():
    images = np.random.default_rng(0).uniform(0, 255, (3, 12, 10, 1)).astype(np.float32)
    return augment_preview.augmented_versions(images, augment.build("crop", (12, 10, 1)), 4)


def test_first_column_is_the_originals_and_every_version_differs(versions):
    images = np.random.default_rng(0).uniform(0, 255, (3, 12, 10, 1)).astype(np.float32)
    assert versions.shape == (3, 5, 12, 10, 1)
    np.testing.assert_array_equal(versions[:, 0], images)
    for k in range(1, 5):
        assert not np.array_equal(versions[:, k], images)
    assert not np.array_equal(versions[:, 1], versions[:, 2])


def test_tile_puts_image_i_version_k_at_row_i_column_k(versions):
    grid = augment_preview.tile(versions)
    assert grid.shape == (3 * 12, 5 * 10, 1) and grid.dtype == np.uint8
    for i in range(3):
        for k in range(5):
            cell = grid[i * 12:(i + 1) * 12, k * 10:(k + 1) * 10]
            np.testing.assert_array_equal(cell, np.round(versions[i, k]).astype(np.uint8))


def test_tensorboard_holds_the_same_grid(versions, tmp_path):
    augment_preview.write_tensorboard(versions, str(tmp_path), name="grid")
    events = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    events.Reload()
    (event,) = events.Tensors("grid")
    png = tf.make_ndarray(event.tensor_proto)[2]  # [width, height, encoded PNG]
    decoded = tf.io.decode_png(png).numpy()
    np.testing.assert_array_equal(decoded, augment_preview.tile(versions))


def test_png_is_written(versions, tmp_path):
    path = augment_preview.write_png(versions, str(tmp_path / "grid.png"), "crop")
    image = tf.io.decode_png(tf.io.read_file(path)).numpy()
    assert image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0


def test_num_versions_below_one_is_refused():
    with pytest.raises(ValueError, match=r"`num_versions` must be >= 1. Received: num_versions=0"):
        augment_preview.augmented_versions(np.zeros((1, 4, 4, 1)), augment.build("flip", (4, 4, 1)), 0)


def test_show_augmentations_script_writes_png_and_tensorboard(shared_tfds, tmp_path):
    out = tmp_path / "show"
    completed = run_script("show_augmentations.py", f"--data_dir={shared_tfds}",
                           "--augment=crop,rotate", "--num_images=2", "--num_versions=2",
                           f"--output_dir={out}")
    assert f"PNG: {out}/augmentations.png" in completed.stdout
    assert (out / "augmentations.png").stat().st_size > 0
    assert plugin_tags(str(out), "images") == {"augmentations"}
    refused = run_script("show_augmentations.py", f"--data_dir={shared_tfds}",
                         "--augment=saturation", f"--output_dir={out}", check=False)
    assert refused.returncode == 1
    assert "`saturation` needs RGB images (3 channels)" in refused.stderr
