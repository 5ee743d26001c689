"""Measures whether the input pipeline keeps up with the training step.

For one dataset, ``measure(...)`` times in turn, ``repeats`` times, alternating the contenders so
that all see the same machine load:

- the **training step**: a compiled ``tf.function`` step like ``tfnet.training.Trainer``'s
  without the distribution strategy (forward pass, ``training.cross_entropy`` from logits,
  ``GradientTape``, Keras ``Adam``) on the MLP of ``tfnet.model.build_model`` (input
  normalisation, hidden ``relu`` layers), fed batches already in memory, so that it measures the
  model alone;
- the **input pipeline** as training consumes it: one full epoch of ``tfnet.data.train_batches``
  over the training split held in memory (``tfnet.data.in_memory``, as ``Trainer`` holds it),
  with no augmentation and with ``augment`` (the epoch's permutation, its gather and its
  augmentation, and the cutting into mini-batches are all ``train_batches``' own). Epoch 0 traces
  the augmentation and is not timed; repeat r times epoch r, in steady state;
- the **floor**: the same number of mini-batches, already cut and held in memory, handed out by
  a ``tf.data`` dataset that does no work (``from_tensor_slices`` over the stacked batches).
  Its rate is what handing batches to a Python training loop costs on this machine by itself:
  no pipeline consumed that way can beat it, so it bounds every ratio.

Each rate is in examples per second; a contender's ratio is the median over repeats of its rate
divided by the training step's rate in the same repeat.
"""

import dataclasses
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from tfnet import augment as augment_lib
from tfnet import data, model as model_lib, training


@dataclasses.dataclass(frozen=True)
class Rate:
    dataset: str
    contender: str
    examples_per_second: float  # median over repeats
    ratio_to_train_step: float  # median over repeats of (this rate / the step's rate)


def synthetic_images(num_examples=10_000, shape=(32, 32, 3), num_classes=10, seed=0):
    """A CIFAR-sized stand-in: uniform uint8 pixels cast to float32 in [0, 255], random labels."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (num_examples,) + tuple(shape), dtype=np.uint8)
    labels = rng.integers(0, num_classes, num_examples).astype(np.int64)
    return tf.data.Dataset.from_tensor_slices((pixels.astype(np.float32), labels))


def _augmentation(augment_names, input_shape):
    augment = augment_lib.build(augment_names, input_shape)
    if augment is None:
        raise ValueError(f"`augment_names` must name at least one augmentation. "
                         f"Received: augment_names={augment_names!r}")
    return augment


def pipelines(examples, batch_size, seed, augment_names, input_shape):
    """The pipeline contenders, each ``epoch -> tfnet.data.train_batches(...)`` for that epoch.

    Args:
      examples: the training split in memory (``tfnet.data.in_memory``), as in training.
      batch_size: b.
      seed: the run's seed.
      augment_names: augmentations for ``tfnet.augment.build``, e.g. ``"crop,rotate"``.
      input_shape: ``(height, width, channels)`` of one example.

    Returns:
      ``{"pipeline, no augmentation": ..., f"pipeline, {augment_names}": ...}``.

    Raises:
      ValueError: ``augment_names`` names no augmentation (or is refused by ``build``).
    """
    augment = _augmentation(augment_names, input_shape)
    return {
        "pipeline, no augmentation":
            lambda epoch: data.train_batches(examples, batch_size, seed, epoch),
        f"pipeline, {augment_names}":
            lambda epoch: data.train_batches(examples, batch_size, seed, epoch, augment=augment),
    }


def _epoch_rate(make, epoch):
    """Examples/s of one epoch, from the call that prepares it to its last mini-batch."""
    start, count = time.perf_counter(), 0
    for _, labels in make(epoch):
        count += int(labels.shape[0])
    return count / (time.perf_counter() - start)


def _train_step_timer(train, info, batch_size, hidden_units, seed):
    mean, variance = data.normalization_statistics(train)
    model = model_lib.build_model(info.input_shape, info.num_classes, hidden_units, mean,
                                  variance, seed=seed)
    optimizer = keras.optimizers.Adam(learning_rate=1e-3)
    optimizer.build(model.trainable_variables)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            cost = tf.reduce_mean(training.cross_entropy(y, model(x, training=True)))
        gradients = tape.gradient(cost, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return cost

    # One epoch of real batches held in memory: the step is timed without any input work.
    batches = [(tf.constant(x), tf.constant(y))
               for x, y in train.batch(batch_size, drop_remainder=True).as_numpy_iterator()]
    train_step(*batches[0])  # trace once, outside the timing

    def rate():
        start = time.perf_counter()
        for x, y in batches:
            cost = train_step(x, y)
        float(cost)  # wait for the last step
        return len(batches) * batch_size / (time.perf_counter() - start)

    return rate


FLOOR = "floor: ready batches from memory, no input work"


def _ready_batches(train, batch_size):
    """``epoch -> dataset`` of one epoch's full mini-batches, cut once and held in memory."""
    features, labels = next(iter(train.batch(batch_size, drop_remainder=True).batch(2**31 - 1)))
    ready = tf.data.Dataset.from_tensor_slices((features, labels))  # [k, b, ...] -> k batches
    return lambda epoch: ready


def measure(name, train, info, augment_names, batch_size=64, hidden_units=(64, 32), repeats=5,
            seed=0):
    """Examples/s of the training step and of ``train_batches`` on one dataset.

    Args:
      name: the dataset's name, for the report.
      train: the unbatched training split, ``(features float32 in [0, 255], label int64)``.
      info: its ``DatasetInfo`` (``input_shape``, ``num_classes``).
      augment_names: augmentations for ``tfnet.augment.build``, e.g. ``"crop,rotate"``.
      batch_size: b. Default 64 (``TrainConfig``'s default).
      hidden_units: the MLP's hidden layers. Default (64, 32), ``TrainConfig``'s.
      repeats: timed rounds, each running every contender once. Default 5.
      seed: the run seed of the pipeline and of the weights. Default 0.

    Returns:
      A list of ``Rate``: the training step, the pipeline without and with augmentation, then
      the floor.
    """
    if repeats < 1:
        raise ValueError(f"`repeats` must be >= 1. Received: repeats={repeats}")
    _augmentation(augment_names, info.input_shape)  # refuse bad names before any work
    train = train.cache()
    step_rate = _train_step_timer(train, info, batch_size, tuple(hidden_units), seed)
    # The timer's normalisation statistics filled the cache: this reads memory, not the source.
    examples = data.in_memory(train)
    contenders = pipelines(examples, batch_size, seed, augment_names, info.input_shape)
    contenders[FLOOR] = _ready_batches(train, batch_size)
    for make in contenders.values():
        _epoch_rate(make, 0)  # epoch 0 traces the augmentation: not timed
    step_rates, rates = [], {contender: [] for contender in contenders}
    for repeat in range(1, repeats + 1):
        step_rates.append(step_rate())
        for contender, make in contenders.items():
            rates[contender].append(_epoch_rate(make, repeat))
    step = f"train step (MLP {','.join(map(str, hidden_units))}, Adam, b={batch_size})"
    results = [Rate(name, step, statistics.median(step_rates), 1.0)]
    for contender, values in rates.items():
        ratios = [value / step_value for value, step_value in zip(values, step_rates)]
        results.append(Rate(name, contender, statistics.median(values), statistics.median(ratios)))
    return results


def format_table(rates):
    """The rates as a markdown table."""
    lines = ["| dataset | contender | examples/s | × train step |", "| --- | --- | ---: | ---: |"]
    for rate in rates:
        lines.append(f"| {rate.dataset} | {rate.contender} | {rate.examples_per_second:,.0f} | "
                     f"{rate.ratio_to_train_step:.2f} |")
    return "\n".join(lines)
