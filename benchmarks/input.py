"""Does the input work keep up? The data part of the compiled loop against the whole loop.

The training loop (``tfnet.training.loop.TrainLoop``) cuts every mini-batch from the split in
memory inside its compiled call: the epoch's order, the gather, the augmentation, then the step.
This benchmark times, per dataset and with and without augmentation, one epoch of

- **the training loop**: the real ``TrainLoop`` with the real train step (the default MLP 64,32
  with Adam at batch 64, XLA where the augmentation allows it, as ``--jit_compile=auto``);
- **the input work alone**: the same ``TrainLoop`` with the same data, order and augmentation,
  whose step only reads the batch (a sum), so that everything but the training step runs.

The ratio (training loop / input work) says how many times the input work fits in the training
time; the goal is ≥ 5, so that the input is never what the step waits for.
"""

import dataclasses

import numpy as np

from benchmarks import harness
from tfnet.config import names_among, positive_int, positive_ints, setting

DATASETS = ("mnist_t10k", "synthetic_cifar")
GOAL = 5.0


@dataclasses.dataclass(frozen=True)
class InputBenchConfig:
    """What to time; each field is a flag of ``scripts/bench_input.py``."""

    datasets: tuple = setting(DATASETS, "mnist_t10k (from --data_dir; skipped when absent) and "
                              "synthetic_cifar (--synthetic_examples random 32x32x3 images).",
                              names_among(*DATASETS))
    mnist_augment: str = setting("crop,rotate", "Augmentations timed on mnist_t10k.")
    cifar_augment: str = setting("flip,crop,brightness,contrast",
                                 "Augmentations timed on synthetic_cifar.")
    hidden_units: tuple = setting((64, 32), "The MLP's hidden layers.",
                           positive_ints)
    batch_size: int = setting(64, "Mini-batch size b.", positive_int)
    rounds: int = setting(5, "Timed rounds (one epoch per contender each).", positive_int)
    data_dir: str = setting(None, "TFDS data directory holding mnist_t10k. Nothing is downloaded.")
    synthetic_examples: int = setting(10_000, "Images of synthetic_cifar.", positive_int)


# A run small enough for a test: synthetic_cifar only, 96 images, a tiny MLP, one round.
QUICK = dict(datasets=("synthetic_cifar",), synthetic_examples=96, hidden_units=(4,),
             batch_size=32, rounds=1)


def synthetic_images(num_examples=10_000, shape=(32, 32, 3), num_classes=10, seed=0):
    """A CIFAR-sized stand-in: uniform pixels in [0, 255] as float32, random labels."""
    import tensorflow as tf

    from tfnet import data as data_lib

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (num_examples, *shape)).astype(np.float32)
    labels = rng.integers(0, num_classes, num_examples)
    return data_lib.Examples(tf.constant(pixels), tf.constant(labels)), num_classes


def _epoch_contender(name, train_step, examples, config, augment, jit_compile):
    import tensorflow as tf

    from tfnet.training.batches import MemoryBatches
    from tfnet.training.loop import TrainLoop

    loop = TrainLoop(train_step, MemoryBatches(examples, 0, config.batch_size), seed=0,
                     position=tf.Variable(0, dtype=tf.int64), augment=augment,
                     jit_compile=jit_compile)
    steps = loop.steps_per_epoch
    loop(steps)  # trace and compile
    return harness.Contender(name, lambda: harness.timed(lambda: loop(steps), loop.num_examples))


def _reads_the_batch(take):
    """A step that does nothing but read its mini-batch: the input work without training."""
    import tensorflow as tf

    features, labels = take(tf.constant(0), 1)
    return tf.reduce_sum(features) + tf.cast(tf.reduce_sum(labels), tf.float32), tf.constant(True)


def _examples(name, config, say):
    from tfnet import data as data_lib

    if name == "synthetic_cifar":
        return synthetic_images(num_examples=config.synthetic_examples)
    try:
        splits = data_lib.load(name, config.data_dir)
    except data_lib.DatasetNotFoundError:
        say(f"skipped {name}: it is not prepared in --data_dir={config.data_dir}")
        return None, None
    return data_lib.in_memory(splits.train), splits.info.num_classes


def run(config, say=print):
    """Times every dataset without and with augmentation; returns the ``harness.Result``s."""
    from tfnet import augment as augment_lib
    from tfnet import model as model_lib
    from tfnet import optimizers
    from tfnet.training import step as step_lib

    results = []
    for name in config.datasets:
        examples, num_classes = _examples(name, config, say)
        if examples is None:
            continue
        shape = tuple(examples.features.shape[1:])
        flat = examples.features.numpy().reshape(len(examples.labels), -1)
        names = config.mnist_augment if name == "mnist_t10k" else config.cifar_augment
        for augment_names in ("", names):
            augment = augment_lib.build(augment_names, shape) if augment_names else None
            jit_compile = not augment_names or augment_lib.compiles_with_xla(augment_names)
            model = model_lib.build_model(shape, num_classes, tuple(config.hidden_units),
                                          flat.mean(axis=0), flat.var(axis=0) + 1e-3, seed=0)
            optimizer = optimizers.get("adam", 1e-3)
            optimizer.build(model.trainable_variables)
            benchmark = (f"{name}, {augment_names or 'no augmentation'}, MLP "
                         f"{','.join(map(str, config.hidden_units))}, b={config.batch_size}, "
                         f"jit_compile={'on' if jit_compile else 'off'}")
            say(f"{benchmark} ...")
            contenders = [
                _epoch_contender("training loop", step_lib.make_train_step(model, optimizer),
                                 examples, config, augment, jit_compile),
                _epoch_contender("input work alone", _reads_the_batch, examples, config, augment,
                                 jit_compile),
            ]
            timings = harness.measure(contenders, config.rounds)
            results.append(harness.result(benchmark, timings, "input work alone", "training loop",
                                          "example", GOAL))
    return results
