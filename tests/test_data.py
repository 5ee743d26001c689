"""tfnet.data: splits, embedded sets, normalisation statistics and mini-batch order."""

import hashlib

import numpy as np
import pytest
import tensorflow as tf

from tfnet import data


def _arrays(dataset):
    xs, ys = zip(*dataset.as_numpy_iterator())
    return np.stack(xs), np.array(ys)


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
    # 8,000 training images in the prepared set: train[:80%] and train[80%:].
    assert (len(x_train), len(x_dev), splits.info.num_test) == (6400, 1600, 2000)
    assert x_train.dtype == np.float32 and x_train.max() == 255.0 and x_train.min() == 0.0
    assert not _fingerprints(x_train) & _fingerprints(x_dev)
    assert set(np.unique(y_train)) == set(range(10))


def test_normalization_statistics_come_from_train_only():
    splits = data.load("circles")
    mean, variance = data.normalization_statistics(splits.train)
    x_train, _ = _arrays(splits.train)
    x_all = np.concatenate([x_train, _arrays(splits.dev)[0], _arrays(splits.test)[0]])
    # Expected: population mean and variance of the training features (METHODS.md §1), float64.
    np.testing.assert_allclose(mean, x_train.astype(np.float64).mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(variance, x_train.astype(np.float64).var(axis=0), rtol=1e-4)
    assert not np.allclose(mean, x_all.mean(axis=0), atol=1e-4)


def test_normalization_floors_constant_features():
    x = np.zeros((64, 3), np.float32)
    x[:, 0] = np.arange(64)
    x[:, 1] = 7.0  # a constant feature, like MNIST's black border pixels
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros(64, np.int64)))
    _, variance = data.normalization_statistics(dataset)
    assert variance[1] == pytest.approx(1e-3 * x[:, 0].var(), rel=1e-4)


def test_train_batches_reshuffle_each_epoch_and_repeat_with_the_seed():
    dataset = data.in_memory(tf.data.Dataset.from_tensor_slices(
        (np.arange(100, dtype=np.float32), np.zeros(100, np.int64))))

    def order(seed, epoch, skip=0):
        return np.concatenate([x for x, _ in data.train_batches(dataset, 16, seed, epoch, skip).as_numpy_iterator()])

    first = order(seed=1, epoch=0)
    assert sorted(first) == list(range(100))  # a permutation: every example once per epoch
    np.testing.assert_array_equal(first, order(seed=1, epoch=0))
    assert not np.array_equal(first, order(seed=1, epoch=1))
    assert not np.array_equal(first, order(seed=2, epoch=0))
    np.testing.assert_array_equal(order(seed=1, epoch=0, skip=3), first[48:])
    assert data.steps_per_epoch(100, 16) == 7


def test_train_batches_augment_chunks_keep_batches_and_seed_per_chunk():
    m = 2 * data.AUGMENT_CHUNK + 100
    dataset = data.in_memory(tf.data.Dataset.from_tensor_slices(
        (np.zeros((m, 1), np.float32), np.arange(m))))

    def augment(features, seed_pair):
        return features + tf.cast(seed_pair[1], tf.float32)  # the chunk's index

    batches = list(data.train_batches(dataset, 64, seed=0, epoch=0, augment=augment).as_numpy_iterator())
    plain = list(data.train_batches(dataset, 64, seed=0, epoch=0).as_numpy_iterator())
    assert [len(y) for _, y in batches] == [len(y) for _, y in plain]  # same mini-batches
    for (_, y), (_, y_plain) in zip(batches, plain):
        np.testing.assert_array_equal(y, y_plain)  # same order, labels untouched
    chunk_of_example = np.concatenate([x.ravel() for x, _ in batches])
    chunk = 64 * (data.AUGMENT_CHUNK // 64)
    np.testing.assert_array_equal(chunk_of_example, np.arange(m) // chunk)
    resumed = list(data.train_batches(dataset, 64, seed=0, epoch=0, skip_batches=40, augment=augment).as_numpy_iterator())
    np.testing.assert_array_equal(resumed[0][0], batches[40][0])


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


def test_train_batches_are_tf_data_full_buffer_shuffle_then_batch():
    # The reference is what tf.data itself gives: the examples shuffled with a full buffer seeded
    # by epoch_seed, then batched; train_batches prepares that epoch in memory, batch for batch.
    x = np.random.default_rng(0).normal(size=(150, 3)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((x, np.arange(150, dtype=np.int64)))
    reference = dataset.shuffle(150, seed=data.epoch_seed(5, 2), reshuffle_each_iteration=False)
    expected = list(reference.batch(32).as_numpy_iterator())
    batches = list(data.train_batches(data.in_memory(dataset), 32, seed=5, epoch=2).as_numpy_iterator())
    assert [len(y) for _, y in batches] == [32] * 4 + [22]
    for (features, labels), (expected_features, expected_labels) in zip(batches, expected, strict=True):
        np.testing.assert_array_equal(labels, expected_labels)
        np.testing.assert_array_equal(features, expected_features)
