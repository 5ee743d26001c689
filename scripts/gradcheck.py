"""Checks the gradients of the model scripts/train.py trains, at initialisation or from a checkpoint.

    python scripts/gradcheck.py                                  # moons, fresh weights
    python scripts/gradcheck.py --hidden_units=64,32 --checkpoint=runs/moons/checkpoints
    python scripts/gradcheck.py --mode=directional --dataset=mnist_t10k --data_dir=../shared/tfds

The model and data flags are train.py's own (tfnet.flags). Prints the report; exit status 0 when
the verdict is "correct", 1 otherwise (or on bad flags).
"""

import sys

from absl import app, flags

from tfnet import flags as tfnet_flags

tfnet_flags.define_train_flags(
    names=("dataset", "data_dir", "dev_fraction", "hidden_units", "activation", "seed")
)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Training checkpoint (prefix or directory) to restore the weights from; "
    "default: the freshly initialised model."
)
_EXAMPLES = flags.DEFINE_integer(
    "examples", 32, "Training examples the cost J is computed on.", lower_bound=1
)
_MODE = flags.DEFINE_enum(
    "mode", "full", ["full", "sampled", "directional"],
    "full: every weight; sampled: per variable the largest-gradient and some random weights; "
    "directional: random directions per variable.",
)
_SAMPLES = flags.DEFINE_integer(
    "samples_per_variable", 10, "sampled mode: largest and random weights per variable.",
    lower_bound=1,
)
_DIRECTIONS = flags.DEFINE_integer(
    "num_directions", 4, "directional mode: random directions per variable.", lower_bound=1
)
_K_WORST = flags.DEFINE_integer("k_worst", 10, "Worst components listed.", lower_bound=0)
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = tfnet_flags.train_config_from_flags(FLAGS)
    from tfnet.gradcheck import training_model  # TensorFlow loads only after validation.

    report = training_model.check_training_model(
        config, checkpoint=_CHECKPOINT.value, examples=_EXAMPLES.value, mode=_MODE.value,
        samples_per_variable=_SAMPLES.value, num_directions=_DIRECTIONS.value,
        k_worst=_K_WORST.value,
    )
    print(report)
    return 0 if report.correct else 1


if __name__ == "__main__":
    sys.exit(app.run(main))
