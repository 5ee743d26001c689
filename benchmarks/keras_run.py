"""Keras ``fit`` with its defaults, as one whole process: the anchor of the all-in comparison.

    python -m benchmarks.keras_run --data_dir=../shared/tfds --epochs=15
    python -m benchmarks.keras_run --data_dir=../shared/tfds --epochs=15 --novalidation

What a Keras user runs to train the network tfnet's default run trains, started and ended as a
process (``benchmarks.runs`` times it): TensorFlow's import, the same data loading as
``scripts/train.py`` (``tfnet.data.load`` with its dev split, the splits read into memory and
checked, the training statistics by ``Normalization.adapt``), the same network
(``tfnet.model.build_model``), then ``model.compile`` with Keras' defaults — ``"adam"`` (α =
0.001), ``jit_compile="auto"`` (XLA off on a machine without a GPU), ``steps_per_execution=1``,
the accuracy metric — and ``model.fit`` at the same batch size for the same epochs, with the
dev split as ``validation_data`` (or none, ``--novalidation``). Nothing is saved.
"""

import dataclasses

from tfnet.config import positive_int, positive_ints, setting


@dataclasses.dataclass(frozen=True)
class KerasRunConfig:
    """The run; each field is a flag of ``python -m benchmarks.keras_run``."""

    dataset: str = setting("mnist_t10k", "The dataset, as scripts/train.py's --dataset.")
    data_dir: str = setting(None, "TFDS data directory holding it. Nothing is downloaded.")
    hidden_units: tuple = setting((256, 128), "Units of each hidden layer.", positive_ints)
    batch_size: int = setting(64, "Mini-batch size b.", positive_int)
    epochs: int = setting(15, "Passes over the training split.", positive_int)
    validation: bool = setting(True, "The dev split as fit's validation_data.")


def train(config):
    """Loads the data as tfnet does and fits the same network with Keras' defaults; returns
    fit's ``History``."""
    import keras

    from tfnet import data as data_lib
    from tfnet import model as model_lib

    splits = data_lib.load(config.dataset, config.data_dir)
    prepared = data_lib.prepare(splits, 0, "")  # in memory, checked, with its statistics
    examples, info = prepared.splits, prepared.info
    model = model_lib.build_model(info.input_shape, info.num_classes,
                                  tuple(config.hidden_units), info.mean, info.variance)
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    features, labels = (t.numpy() for t in examples["train"])
    dev = tuple(t.numpy() for t in examples["dev"]) if config.validation else None
    return model.fit(features, labels, batch_size=config.batch_size, epochs=config.epochs,
                     validation_data=dev)


def main(argv):
    from absl import app

    from tfnet import flags as tfnet_flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    train(tfnet_flags.config_from_flags(KerasRunConfig))
    return 0


if __name__ == "__main__":
    from tfnet import flags as tfnet_flags

    tfnet_flags.import_tensorflow_quietly()
    tfnet_flags.define_config_flags(KerasRunConfig)
    tfnet_flags.run(main)
