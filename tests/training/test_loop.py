"""The K-step loop: it feeds the same mini-batches in the same order for any K, from memory or
streamed, and a run's weights, exported outputs and TensorBoard points do not depend on K
(``--steps_per_loop``)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import read_scalars
from tfnet import config as config_lib
from tfnet import data as data_lib
from tfnet import training
from tfnet.data.splits import ArraySplit
from tfnet.training import batches as batches_lib
from tfnet.training.loop import TrainLoop

M, B = 50, 8  # 7 mini-batches per epoch, the last of 2
SOURCES = ["memory", "stream"]


def _batches(source, seed):
    """The M examples whose labels are their positions, held in memory or streamed."""
    if source == "memory":
        examples = data_lib.Examples(tf.zeros([M, 1]), tf.range(M, dtype=tf.int64))
        return batches_lib.MemoryBatches(examples, seed, B)
    return batches_lib.StreamBatches(ArraySplit(np.zeros([M, 1], np.float32), np.arange(M)), seed, B)


def _recording_loop(position, log_every_steps=1, source="memory", **kwargs):
    """A loop whose step records the labels of each mini-batch it is given (the labels are the
    examples' positions in the split) and returns their sum as the cost."""
    seen = []

    def record(labels):
        seen.append(labels.numpy().tolist())
        return np.float32(0)

    def train_step(take):
        _, labels = take(tf.constant(0), 1)
        tf.py_function(record, [labels], tf.float32)
        return tf.cast(tf.reduce_sum(labels), tf.float32), tf.constant(True)

    loop = TrainLoop(train_step, _batches(source, seed=9), seed=9, position=position,
                     log_every_steps=log_every_steps, **kwargs)
    return loop, seen


def _expected_batches(first_step, steps):
    """The mini-batches of global steps first_step+1 ... first_step+steps, from the data module."""
    batches = []
    for step in range(first_step, first_step + steps):
        epoch, batch = divmod(step, 7)
        order = data_lib.epoch_order(M, seed=9, epoch=epoch)
        batches.append(data_lib.batch_indices(order, batch, B).numpy().tolist())
    return batches


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("calls", [[1] * 17, [17], [3, 11, 2, 1], [7, 7, 3]])
def test_the_loop_feeds_each_epochs_order_cut_into_mini_batches_for_any_k(calls, source):
    position = tf.Variable(4, dtype=tf.int64)  # resumed mid-epoch 1: 4 of its 7 batches trained
    loop, seen = _recording_loop(position, source=source)
    logged = []
    for steps in calls:
        output = loop(steps)
        assert output.steps == steps and not output.stopped
        logged += output.logged
    assert int(position.numpy()) == 4 + 17  # into epoch 3 (steps 15-21)
    assert seen == _expected_batches(4, 17)
    assert [step for step, _ in logged] == list(range(5, 22))
    assert [cost for _, cost in logged] == [float(sum(batch)) for batch in seen]


@pytest.mark.parametrize("source", SOURCES)
def test_a_stream_moved_by_the_position_reads_on_from_there(source):
    """A loop whose position is set back or forward between calls (a restore) reads the
    mini-batches of the new position, not the next ones of its pipeline."""
    position = tf.Variable(0, dtype=tf.int64)
    loop, seen = _recording_loop(position, source=source)
    loop(5)
    position.assign(2)
    loop(3)
    position.assign(20)
    loop(2)
    assert seen == _expected_batches(0, 5) + _expected_batches(2, 3) + _expected_batches(20, 2)


def test_logged_costs_are_those_of_the_multiples_of_log_every_steps():
    position = tf.Variable(0, dtype=tf.int64)
    loop, seen = _recording_loop(position, log_every_steps=3)
    logged = loop(10).logged + loop(4).logged
    assert [step for step, _ in logged] == [3, 6, 9, 12]
    assert [cost for _, cost in logged] == [float(sum(seen[s - 1])) for s in (3, 6, 9, 12)]
    with pytest.raises(ValueError, match=r"num_steps must be in \[1, 3072\]. Received: num_steps=0"):
        loop(0)


def _nonfinite_loop(stop_on_nonfinite, source="memory"):
    """A loop whose step is not finite at global steps 3 and 5 (mini-batches 2 and 4)."""
    applied = tf.Variable(0, dtype=tf.int64)

    def train_step(take):
        take(tf.constant(0), 1)
        finite = tf.logical_not(tf.reduce_any(tf.equal(counter.read_value(), [2, 4])))
        counter.assign_add(1)
        applied.assign_add(tf.cast(finite, tf.int64))
        cost = tf.where(finite, 1.0, np.float32(np.nan))
        return cost, finite

    counter = tf.Variable(0, dtype=tf.int64)  # calls of the step
    position = tf.Variable(0, dtype=tf.int64)
    loop = TrainLoop(train_step, _batches(source, seed=0), seed=0, position=position,
                     log_every_steps=1, stop_on_nonfinite=stop_on_nonfinite)
    return loop, position, applied


@pytest.mark.parametrize("source", SOURCES)
def test_a_non_finite_step_stops_the_loop_before_it(source):
    loop, position, applied = _nonfinite_loop(stop_on_nonfinite=True, source=source)
    output = loop(6)
    assert output.stopped and output.steps == 2 and int(position.numpy()) == 2
    assert output.first_nonfinite_step == 3 and np.isnan(output.nonfinite_cost)
    assert [step for step, _ in output.logged] == [1, 2] and int(applied.numpy()) == 2


def test_skip_step_drops_non_finite_updates_and_goes_on():
    loop, position, applied = _nonfinite_loop(stop_on_nonfinite=False)
    output = loop(6)
    assert not output.stopped and output.steps == 6 and output.skipped == 2
    assert output.first_nonfinite_step == 3 and int(applied.numpy()) == 4
    assert [step for step, _ in output.logged] == [1, 2, 3, 4, 5, 6]


# -- Whole runs: K does not change a thing ----------------------------------------------------

def _run(tmp_path, name, **overrides):
    # Evaluated every 2 epochs: the calls of the automatic K run across epoch boundaries.
    values = dict(model_dir=str(tmp_path / name), export=False, deterministic=True, seed=3,
                  hidden_units=(16, 8), epochs=3, eval_every_epochs=2, log_every_steps=4,
                  checkpoint_every_seconds=0.0)
    values.update(overrides)
    return training.train(config_lib.TrainConfig(**values), verbose=0)


def _assert_same_run(first, second, probe):
    names = [w.path for w in first.model.weights]
    for name, a, b in zip(names, first.model.weights, second.model.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)
    served = [r.model(probe, training=False).numpy() for r in (first, second)]
    np.testing.assert_array_equal(*served)
    assert first.history == [dict(r, seconds=f["seconds"]) for r, f in zip(second.history, first.history)]
    for run in ("train", "dev"):  # TensorBoard: the same points, the same values
        assert (read_scalars(f"{first.run_dir}/{run}") == read_scalars(f"{second.run_dir}/{run}"))


@pytest.mark.parametrize("jit_compile", ["on", "off"])
def test_moons_runs_are_bit_identical_one_step_per_call_or_many(tmp_path, jit_compile):
    runs = [_run(tmp_path, f"k{k}", steps_per_loop=k, jit_compile=jit_compile) for k in (1, 0)]
    probe = data_lib.make_embedded("moons", 64, seed=99)[0]
    _assert_same_run(*runs, probe)


def test_mnist_with_batch_norm_dropout_and_crop_is_bit_identical_for_any_k(tmp_path, shared_tfds):
    # crop compiles with XLA: this is the XLA loop with augmentation, BatchNorm and dropout.
    overrides = dict(dataset="mnist_t10k", data_dir=shared_tfds, hidden_units=(32,), epochs=2,
                     jit_compile="on",
                     batch_size=250, batch_norm=True, keep_prob=(0.8,), augment="crop",
                     learning_rate=0.001, log_every_steps=5)
    runs = [_run(tmp_path, f"k{k}", steps_per_loop=k, **overrides) for k in (1, 0)]
    probe = data_lib.in_memory(data_lib.load("mnist_t10k", shared_tfds).test).features[:64]
    _assert_same_run(*runs, probe)


@pytest.mark.parametrize("source", SOURCES)
def test_each_mini_batch_is_augmented_with_its_own_seed(source):
    """The loop passes mini-batch i of epoch e the seed augmentation_seed(seed, e, i): one draw
    per mini-batch, not one per epoch or per call, for any K."""
    seeds = []

    def record(seed):
        seeds.append(tuple(seed.numpy().tolist()))
        return np.float32(0)

    def augment(features, seed):
        tf.py_function(record, [seed], tf.float32)
        return features

    def train_step(take):
        take(tf.constant(0), 1)
        return tf.constant(0.0), tf.constant(True)

    position = tf.Variable(5, dtype=tf.int64)
    loop = TrainLoop(train_step, _batches(source, seed=4), seed=4, position=position,
                     augment=augment)
    for steps in (3, 9, 1):
        loop(steps)
    expected = [tuple(data_lib.augmentation_seed(4, step // 7, step % 7).numpy().tolist())
                for step in range(5, 5 + 13)]
    assert seeds == expected and len(set(seeds)) == 13


def test_a_step_xla_cannot_compile_is_named_or_run_without_xla():
    """Under op determinism XLA has no MaxPool gradient: with jit_compile on the loop raises one
    line (nothing has run); with a fallback it says why and trains without XLA."""
    from tensorflow.python.framework import config as tf_config

    from tfnet import optimizers
    from tfnet.training import step as step_lib

    def loop(xla_fallback):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 1),
                                  keras.layers.MaxPooling2D(2),
                                  keras.layers.Flatten(), keras.layers.Dense(2)])
        optimizer = optimizers.get("gd", 0.1)
        optimizer.build(model.trainable_variables)
        examples = data_lib.Examples(tf.random.stateless_normal((M, 4, 4, 1), (1, 2)),
                                     tf.range(M, dtype=tf.int64) % 2)
        return TrainLoop(step_lib.make_train_step(model, optimizer),
                         batches_lib.MemoryBatches(examples, 0, B), seed=0,
                         position=tf.Variable(0, dtype=tf.int64), jit_compile=True,
                         xla_fallback=xla_fallback)

    was_enabled = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        with pytest.raises(training.XlaUnavailableError, match=r"jit_compile must be off or auto "
                           r"for this run: XLA cannot compile its training step \(.*MaxPool"):
            loop(None)(3)
        reasons = []
        fallen_back = loop(reasons.append)
        assert fallen_back(3).steps == 3 and not fallen_back.jit_compile
        assert len(reasons) == 1 and "MaxPool" in reasons[0]
    finally:
        if not was_enabled:
            tf_config.disable_op_determinism()
