"""Tests of tfnet.input_bench: it times tfnet.data.train_batches itself, on the split in memory, and
reports median ratios to the training step.

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
    return [x for x, _ in pairs], [y for _, y in pairs]


def test_pipelines_are_train_batches_itself():
    # The expected batches come from tfnet.data.train_batches directly: the benchmark must time
    # exactly what training consumes, batch for batch.
    train, x = dataset()
    train = data.in_memory(train)
    contenders = input_bench.pipelines(train, 16, seed=3, augment_names="crop", input_shape=SHAPE)
    assert list(contenders) == ["pipeline, no augmentation", "pipeline, crop"]
    plain_x, plain_y = collect(contenders["pipeline, no augmentation"](2))
    expected_x, expected_y = collect(data.train_batches(train, 16, seed=3, epoch=2))
    assert [len(y) for y in plain_y] == [16] * 6 + [4]
    np.testing.assert_array_equal(np.concatenate(plain_y), np.concatenate(expected_y))
    np.testing.assert_array_equal(np.concatenate(plain_x), np.concatenate(expected_x))

    augmented_x, augmented_y = collect(contenders["pipeline, crop"](2))
    reference_x, reference_y = collect(
        data.train_batches(train, 16, seed=3, epoch=2, augment=augment.build("crop", SHAPE)))
    assert [len(y) for y in augmented_y] == [16] * 6 + [4]
    np.testing.assert_array_equal(np.concatenate(augmented_y), np.concatenate(reference_y))
    np.testing.assert_array_equal(np.concatenate(augmented_x), np.concatenate(reference_x))
    # The augmented contender really augments: same order, other pixels.
    np.testing.assert_array_equal(np.concatenate(augmented_y), np.concatenate(plain_y))
    assert not np.array_equal(np.concatenate(augmented_x), np.concatenate(plain_x))


def test_measure_reads_the_source_once_and_times_cached_epochs(monkeypatch):
    # A generator source counts its passes: with the split cached, the source is read once
    # (normalisation statistics fill the cache, which in_memory then reads) and every timed
    # epoch comes from memory.
    passes = []
    x = np.random.default_rng(1).uniform(0, 255, (40,) + SHAPE).astype(np.float32)

    def examples():
        passes.append(1)
        yield from zip(x, np.arange(40, dtype=np.int64) % 10)

    spec = (tf.TensorSpec(SHAPE, tf.float32), tf.TensorSpec([], tf.int64))
    train = tf.data.Dataset.from_generator(examples, output_signature=spec)
    epochs = []
    real_train_batches = data.train_batches

    def recording_train_batches(dataset, batch_size, seed, epoch, **kwargs):
        epochs.append(epoch)
        return real_train_batches(dataset, batch_size, seed, epoch, **kwargs)

    monkeypatch.setattr(data, "train_batches", recording_train_batches)
    info = data.DatasetInfo("tiny", 10, SHAPE, 40, 0, 0)
    rates = input_bench.measure("tiny", train, info, "crop", batch_size=8, hidden_units=(4,),
                                repeats=2)
    assert len(passes) == 1
    # Epoch 0 of each contender traces its maps untimed; repeat r runs epoch r.
    assert epochs == [0, 0, 1, 1, 2, 2]
    assert [r.contender for r in rates] == [
        "train step (MLP 4, Adam, b=8)", "pipeline, no augmentation", "pipeline, crop",
        input_bench.FLOOR]
    assert all(r.examples_per_second > 0 for r in rates)


def test_ratios_are_medians_of_per_repeat_ratios(monkeypatch):
    # Planted rates, worked by hand. Step: 100, 20, 200. Plain pipeline: 100, 100, 4000 -> per
    # repeat ratios 1, 5, 20, median 5 (the ratio of the medians, 100 / 100 = 1, would be
    # wrong). Augmented: 10, 40, 1000 -> ratios 0.1, 2, 5, median 2 (not 40 / 100 = 0.4).
    step_rates = iter([100.0, 20.0, 200.0])
    # The first three values are the untimed epoch-0 passes; they must not count. Floor: 300,
    # 300, 300 -> ratios 3, 15, 1.5, median 3.
    pipeline_rates = iter([1e9, 1e9, 1e9, 100.0, 10.0, 300.0, 100.0, 40.0, 300.0, 4000.0, 1000.0,
                           300.0])
    monkeypatch.setattr(input_bench, "_train_step_timer", lambda *args: lambda: next(step_rates))
    monkeypatch.setattr(input_bench, "_epoch_rate", lambda make, epoch: next(pipeline_rates))
    train, _ = dataset(16)
    info = data.DatasetInfo("tiny", 100, SHAPE, 16, 0, 0)
    step, plain, crop, floor = input_bench.measure("tiny", train, info, "crop", batch_size=8,
                                                   repeats=3)
    assert (step.examples_per_second, step.ratio_to_train_step) == (100.0, 1.0)
    assert plain.examples_per_second == 100.0
    assert plain.ratio_to_train_step == pytest.approx(5.0)
    assert crop.examples_per_second == 40.0
    assert crop.ratio_to_train_step == pytest.approx(2.0)
    assert (floor.examples_per_second, floor.ratio_to_train_step) == (300.0, pytest.approx(3.0))


def test_format_table():
    rates = [input_bench.Rate("tiny", "train step", 1234.4, 1.0),
             input_bench.Rate("tiny", "pipeline, crop", 98765.6, 80.0114)]
    assert input_bench.format_table(rates) == (
        "| dataset | contender | examples/s | × train step |\n"
        "| --- | --- | ---: | ---: |\n"
        "| tiny | train step | 1,234 | 1.00 |\n"
        "| tiny | pipeline, crop | 98,766 | 80.01 |"
    )


@pytest.mark.parametrize("names,repeats,message", [
    ("", 1, r"`augment_names` must name at least one augmentation. Received: augment_names=''"),
    ("crop", 0, r"`repeats` must be >= 1. Received: repeats=0"),
])
def test_bad_measure_arguments_are_refused(names, repeats, message):
    train, _ = dataset(16)
    info = data.DatasetInfo("tiny", 100, SHAPE, 16, 0, 0)
    with pytest.raises(ValueError, match=message):
        input_bench.measure("tiny", train, info, names, repeats=repeats)


def test_floor_hands_out_one_epoch_of_full_batches_from_memory():
    train, x = dataset(100)
    ready = input_bench._ready_batches(train.cache(), 16)
    batches = [(f.numpy(), y.numpy()) for f, y in ready(0)]
    assert [len(y) for _, y in batches] == [16] * 6  # full batches only: 96 of the 100
    np.testing.assert_array_equal(np.concatenate([f for f, _ in batches]), x[:96])


def test_an_epoch_is_timed_from_the_call_that_prepares_it(monkeypatch):
    # train_batches does its work (gather, augmentation) when called: that call must be inside
    # the timed span, or the pipeline would look free. A factory that sleeps 0.2 s before
    # returning 10 examples must time at under 50 examples/s.
    import time

    def slow_factory(epoch):
        time.sleep(0.2)
        return [(None, np.zeros(10))]

    assert input_bench._epoch_rate(slow_factory, 0) < 50
