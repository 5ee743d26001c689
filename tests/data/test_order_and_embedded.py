"""tfnet.data: embedded sets, TFDS splits, normalisation statistics and mini-batch order."""

import hashlib

import numpy as np
import pytest
import tensorflow as tf

from tfnet import data


def _arrays(split):
    return tuple(t.numpy() for t in data.in_memory(split))


def _fingerprints(x):
    return {hashlib.sha1(row.tobytes()).hexdigest() for row in x}


@pytest.mark.parametrize("name", data.EMBEDDED_DATASETS)
def test_embedded_sets_are_deterministic_balanced_and_seeded(name):
    x, y = data.make_embedded(name, num_examples=300, seed=3)
    again_x, again_y = data.make_embedded(name, num_examples=300, seed=3)
    other_x, _ = data.make_embedded(name, num_examples=300, seed=4)
    np.testing.assert_array_equal(x, again_x)
    np.testing.assert_array_equal(y, again_y)
    assert not np.array_equal(x, other_x)
    assert x.shape == (300, 2) and x.dtype == np.float32 and y.dtype == np.int64
    assert set(np.unique(y)) == {0, 1} and y.sum() == 150


@pytest.mark.parametrize("dev_fraction", [0.2, 0.35])
def test_embedded_splits_sizes_and_no_overlap(dev_fraction):
    splits = data.load("moons", dev_fraction=dev_fraction)
    x_train, _ = _arrays(splits.train)
    x_dev, _ = _arrays(splits.dev)
    x_test, _ = _arrays(splits.test)
    info = splits.info
    assert (len(x_train), len(x_dev), len(x_test)) == (info.num_train, info.num_dev, info.num_test)
    assert info.num_train + info.num_dev == 1000
    assert info.num_dev == round(1000 * dev_fraction)
    assert not _fingerprints(x_train) & _fingerprints(x_dev)
    assert not _fingerprints(x_train) & _fingerprints(x_test)


def test_mnist_t10k_splits_from_tfds_slicing(shared_tfds):
    splits = data.load("mnist_t10k", data_dir=shared_tfds, dev_fraction=0.2)
    x_train, y_train = _arrays(splits.train)
    x_dev, _ = _arrays(splits.dev)
    assert splits.info.num_classes == 10 and splits.info.input_shape == (28, 28, 1)
    # train[:80%] and train[80%:] of the prepared set (8,000 and 2,000 images in ../shared's).
    import tensorflow_datasets as tfds

    sizes = tfds.builder("mnist_t10k", data_dir=shared_tfds).info.splits
    m = sizes["train"].num_examples
    assert (len(x_train), len(x_dev), splits.info.num_test) == (
        m * 80 // 100, m - m * 80 // 100, sizes["test"].num_examples)
    assert x_train.dtype == np.float32 and x_train.max() == 255.0 and x_train.min() == 0.0
    assert not _fingerprints(x_train) & _fingerprints(x_dev)
    assert set(np.unique(y_train)) == set(range(10))


def test_normalization_statistics_come_from_train_only():
    splits = data.load("circles")
    mean, variance = data.normalization_statistics(splits.train.batches(100))
    x_train, _ = _arrays(splits.train)
    x_all = np.concatenate([x_train, _arrays(splits.dev)[0], _arrays(splits.test)[0]])
    # Expected: population mean and variance of the training features (docs/methods.md §1), float64.
    np.testing.assert_allclose(mean, x_train.astype(np.float64).mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(variance, x_train.astype(np.float64).var(axis=0), rtol=1e-4)
    assert not np.allclose(mean, x_all.mean(axis=0), atol=1e-4)


def test_normalization_floors_constant_features():
    x = np.zeros((64, 3), np.float32)
    x[:, 0] = np.arange(64)
    x[:, 1] = 7.0  # a constant feature, like MNIST's black border pixels
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros(64, np.int64))).batch(16)
    _, variance = data.normalization_statistics(dataset)
    assert variance[1] == pytest.approx(1e-3 * x[:, 0].var(), rel=1e-4)


def test_epoch_order_is_a_permutation_keyed_by_seed_and_epoch():
    first = data.epoch_order(100, seed=1, epoch=0).numpy()
    assert sorted(first) == list(range(100))  # every example once per epoch
    np.testing.assert_array_equal(first, data.epoch_order(100, seed=1, epoch=0).numpy())
    assert not np.array_equal(first, data.epoch_order(100, seed=1, epoch=1).numpy())
    assert not np.array_equal(first, data.epoch_order(100, seed=2, epoch=0).numpy())


def test_epoch_order_and_augmentation_seed_are_the_same_compiled_by_xla():
    def draws(seed, epoch):
        return (data.epoch_order(1000, seed, epoch),
                data.augmentation_seed(seed, epoch, batch=3, replica=1))

    eager = [t.numpy() for t in draws(tf.constant(7, tf.int64), tf.constant(4, tf.int64))]
    compiled = tf.function(draws, jit_compile=True)
    xla = [t.numpy() for t in compiled(tf.constant(7, tf.int64), tf.constant(4, tf.int64))]
    for a, b in zip(eager, xla, strict=True):
        np.testing.assert_array_equal(a, b)


def test_augmentation_seeds_differ_per_epoch_batch_and_replica():
    seeds = {tuple(data.augmentation_seed(0, epoch, batch, replica).numpy())
             for epoch in range(3) for batch in range(3) for replica in range(2)}
    assert len(seeds) == 18


def test_batch_indices_cut_the_order_into_full_batches_and_a_smaller_last_one():
    order = data.epoch_order(100, seed=3, epoch=0)
    assert data.steps_per_epoch(100, 16) == 7
    batches = [data.batch_indices(order, i, 16).numpy() for i in range(7)]
    assert [len(b) for b in batches] == [16] * 6 + [4]
    np.testing.assert_array_equal(np.concatenate(batches), order.numpy())
    # A size given as a Python int (for XLA's static shapes) cuts the same batch.
    np.testing.assert_array_equal(data.batch_indices(order, 6, 16, size=4).numpy(), batches[6])


def test_unknown_dataset_names_what_exists(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match=r"not a known dataset.*moons, circles, flower"):
        data.load("no_such_dataset", data_dir=str(tmp_path))


def test_unprepared_tfds_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match=r"'mnist' is a TFDS dataset but its data is not prepared.*tfds build mnist"):
        data.load("mnist", data_dir=str(tmp_path))


@pytest.mark.parametrize("dev_fraction", [0.0, 1.0, -0.1, 1.5])
def test_dev_fraction_outside_open_unit_interval_is_refused(dev_fraction):
    with pytest.raises(ValueError, match=rf"dev_fraction must be in \(0, 1\). Received: dev_fraction={dev_fraction}"):
        data.load("moons", dev_fraction=dev_fraction)
