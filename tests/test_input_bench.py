"""Tests of tfnet.input_bench: its pipelines deliver the right examples; its report is complete.

No timing is asserted (speed is for scripts/bench_input.py to print).
"""

import numpy as np
import pytest
import tensorflow as tf

from tfnet import augment, data, input_bench

SHAPE = (8, 8, 1)


def dataset(m=100):
    # Label = example index, so that an epoch's order can be read off the labels.
    x = np.random.default_rng(0).uniform(60, 190, (m,) + SHAPE).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((x, np.arange(m, dtype=np.int64))), x


def collect(batches):
    pairs = [(x.numpy(), y.numpy()) for x, y in batches]
    return np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs])


def test_gathered_batches_are_a_seeded_permutation_augmented_per_batch():
    train, x = dataset()
    features, labels = tf.constant(x), tf.range(100, dtype=tf.int64)
    fn = augment.build("brightness", SHAPE)
    plain_x, order = collect(input_bench._gathered_batches(features, labels, 16, 1, 0, None))
    assert sorted(order) == list(range(100))
    np.testing.assert_array_equal(plain_x, x[order])
    again = collect(input_bench._gathered_batches(features, labels, 16, 1, 0, None))[1]
    np.testing.assert_array_equal(again, order)
    other = collect(input_bench._gathered_batches(features, labels, 16, 1, 1, None))[1]
    assert not np.array_equal(other, order)
    augmented_x, augmented_order = collect(
        input_bench._gathered_batches(features, labels, 16, 1, 0, fn))
    np.testing.assert_array_equal(augmented_order, order)
    delta = augmented_x - plain_x  # brightness: one delta per example (no clipping in [60, 190])
    np.testing.assert_allclose(delta, delta[:, :1, :1] * np.ones_like(delta), atol=1e-3)
    assert np.abs(delta).max() > 1.0


def test_batch_augmented_batches_keep_train_batches_order():
    train, x = dataset()
    fn = augment.build("crop", SHAPE)
    _, expected = collect(data.train_batches(train, 16, seed=3, epoch=2))
    augmented_x, order = collect(input_bench._batch_augmented_batches(train, 16, 3, 2, fn))
    np.testing.assert_array_equal(order, expected)
    assert not np.array_equal(augmented_x, x[order])


def test_measure_reports_every_contender_against_the_step():
    train, _ = dataset(64)
    info = data.DatasetInfo("tiny", 100, SHAPE, 64, 0, 0)
    rates = input_bench.measure("tiny", train, info, "crop", batch_size=16, hidden_units=(4,),
                                repeats=1)
    assert [r.contender for r in rates] == [
        "train step (MLP 4, Adam, b=16)", "pipeline, no augmentation",
        "pipeline, crop per example", "pipeline, crop per batch",
        "gathered batches, no augmentation", "gathered batches, crop per batch",
    ]
    assert rates[0].ratio_to_train_step == 1.0
    assert all(r.examples_per_second > 0 for r in rates)
    table = input_bench.format_table(rates)
    assert table.count("\n") == len(rates) + 1 and "| tiny | pipeline, crop per batch |" in table


@pytest.mark.parametrize("names,repeats,message", [
    ("", 1, r"`augment_names` must name at least one augmentation. Received: augment_names=''"),
    ("crop", 0, r"`repeats` must be >= 1. Received: repeats=0"),
])
def test_bad_measure_arguments_are_refused(names, repeats, message):
    train, _ = dataset(16)
    info = data.DatasetInfo("tiny", 100, SHAPE, 16, 0, 0)
    with pytest.raises(ValueError, match=message):
        input_bench.measure("tiny", train, info, names, repeats=repeats)
