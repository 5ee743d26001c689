"""Gradient check of the classifier that `scripts/train.py` trains, optionally after training.

The model is built exactly as `tfnet.training.Trainer` builds it, through the same path from a
`TrainConfig` to objects (`tfnet.build`: the same seed, data and statistics, model), optionally
restored from a training checkpoint, and checked on the first `examples` training examples with
training's cost

    J = mean over the batch of cross_entropy(labels, logits) + sum(model.losses).
"""

import keras
import tensorflow as tf

from tfnet import build, training
from tfnet import data as data_lib
from tfnet.gradcheck import check_gradients


def build_training_model(config):
    """The model `tfnet.training.Trainer(config)` starts from, and the training split (a
    `tfnet.data.Split`)."""
    keras.utils.set_random_seed(config.seed)
    prepared = build.prepared_data(config, build.data(config))
    return build.model(config, prepared.info), prepared.splits["train"]


def restore(model, checkpoint):
    """Loads the model's weights from a training checkpoint (a prefix, or a directory holding
    checkpoints: its latest). Raises ValueError when there is none or it does not hold this
    model's weights."""
    path = tf.train.latest_checkpoint(checkpoint) if tf.io.gfile.isdir(checkpoint) else checkpoint
    if not path or not tf.io.gfile.glob(path + ".index"):
        raise ValueError(
            f"`checkpoint` must be a checkpoint prefix or a directory holding one. "
            f"Received: checkpoint={checkpoint!r}"
        )
    # The training checkpoint also holds the optimiser and run state: only the model is read.
    try:
        status = tf.train.Checkpoint(model=model).restore(path).expect_partial()
        status.assert_existing_objects_matched()
    except (ValueError, AssertionError) as error:  # other shapes, or variables missing
        raise ValueError(
            f"`checkpoint` must hold the weights of the model the config builds (the run's "
            f"hidden_units, batch_norm, ...: pass its flags.txt). Received: "
            f"checkpoint={checkpoint!r} ({error})"
        ) from None
    return path


def check_training_model(config, *, checkpoint=None, examples=32, **check_kwargs):
    """Builds (and restores) the training model and returns its `tfnet.gradcheck.report.Report`.

    Args:
        config: a `tfnet.config.TrainConfig` (its data fields, seed and every
            model field: model, hidden_units, conv_filters, activation, initializer,
            batch_norm, bn_*, keep_prob, l2).
        checkpoint: a checkpoint prefix or directory written by training. Defaults to None: the
            freshly initialised model.
        examples: how many training examples the cost J is computed on. Defaults to 32.
        **check_kwargs: passed to `check_gradients` (mode, epsilon, k_worst, ...).
    """
    if not isinstance(examples, int) or examples < 1:
        raise ValueError(f"`examples` must be an integer >= 1. Received: examples={examples!r}")
    model, train = build_training_model(config)
    if checkpoint:
        restore(model, checkpoint)
    if isinstance(train, data_lib.Examples):
        x, y = train.features[:examples], train.labels[:examples]
    else:  # streamed: its first examples, read from disk
        x, y = next(iter(train.batches(examples)))
    return check_gradients(model, x, y, training.cross_entropy, **check_kwargs)
