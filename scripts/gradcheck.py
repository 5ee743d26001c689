"""Checks the gradients of the model scripts/train.py trains, at initialisation or from a checkpoint.

    python scripts/gradcheck.py                                  # moons, fresh weights
    python scripts/gradcheck.py --flagfile=runs/moons-adam-d7066794/flags.txt --checkpoint=runs/moons-adam-d7066794/checkpoints
    python scripts/gradcheck.py --mode=directional --dataset=mnist_t10k --data_dir=../shared/tfds
    python scripts/gradcheck.py --batch_norm --l2=0.01 --keep_prob=0.8 --inference_layers
    python scripts/gradcheck.py --strategy=tpu --tpu=local         # on the TPU, in float32
    python scripts/gradcheck.py --modes=rev,fwd --order=2          # forward mode, and the Hessian

The model and data flags are train.py's own (tfnet.flags). `--strategy` (with `--tpu`,
`--cpu_devices`) is built as train.py builds it and the check runs in its scope, on its first
device. Prints the report; exit status 0 when the verdict is "correct", 1 otherwise (or on bad
flags, a model whose J is not deterministic, an unreadable checkpoint).
"""

import sys

from absl import app, flags, logging

from tfnet import flags as tfnet_flags

# All of train.py's flags (the same definitions), so that `--flagfile=<run>/flags.txt` rebuilds
# a run's model; the data and model flags are the ones the check uses.
tfnet_flags.define_train_flags()
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
_MODES = flags.DEFINE_list(
    "modes", ["rev"], "Autodiff modes checked against the differences: rev (tf.GradientTape), or "
    "rev,fwd (also tf.autodiff.ForwardAccumulator JVPs, compared with the differences and with "
    "reverse mode; the report says where TensorFlow cannot compute them).",
)
_ORDER = flags.DEFINE_enum(
    "order", "1", ["1", "2"],
    "1: the gradient; 2: also the Hessian, reverse-over-reverse and forward-over-reverse "
    "products against differences of the gradient (the whole Hessian with --mode=full and at most "
    "4,194,304 entries, random directions otherwise).",
)
_SAMPLES = flags.DEFINE_integer(
    "samples_per_variable", 10, "sampled mode: largest and random weights per variable.",
    lower_bound=1,
)
_DIRECTIONS = flags.DEFINE_integer(
    "num_directions", 4, "directional mode: random directions per variable.", lower_bound=1
)
_K_WORST = flags.DEFINE_integer("k_worst", 10, "Worst components listed.", lower_bound=0)
_INFERENCE_LAYERS = flags.DEFINE_bool(
    "inference_layers", False, "Run stochastic layers (dropout) in inference mode, so that J is "
    "a deterministic function of the weights; without it a model with --keep_prob < 1 is refused."
)
FLAGS = flags.FLAGS


@flags.validator("modes", message="invalid --modes")
def _check_modes(modes):
    if "rev" not in modes or len(set(modes)) != len(modes) or not set(modes) <= {"rev", "fwd"}:
        raise flags.ValidationError(
            f"--modes must be rev or rev,fwd (in any order). Received: modes={','.join(modes)!r}"
        )
    return True


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = tfnet_flags.train_config_from_flags(FLAGS)
    # TensorFlow's Python warnings off: a checkpoint of another model is one line of ours, not
    # also a warning per value it could not restore when the failed restore is collected.
    logging.set_verbosity(logging.ERROR)
    from tfnet import distribute
    from tfnet.gradcheck import NondeterministicCostError, training_model

    # Before any TensorFlow op: --cpu_devices splits the CPU before TensorFlow initialises.
    strategy = distribute.make_strategy(
        config.strategy, tpu=config.tpu, cpu_devices=config.cpu_devices
    )
    try:
        with strategy.scope():  # check_gradients runs on the strategy's first device
            report = training_model.check_training_model(
                config, checkpoint=_CHECKPOINT.value, examples=_EXAMPLES.value, mode=_MODE.value,
                samples_per_variable=_SAMPLES.value, num_directions=_DIRECTIONS.value,
                k_worst=_K_WORST.value, inference_layers=_INFERENCE_LAYERS.value,
                modes=tuple(_MODES.value), order=int(_ORDER.value),
            )
    except NondeterministicCostError as error:  # e.g. active dropout
        print(f"error: {error} (script flag: --inference_layers)", file=sys.stderr)
        return 1
    except ValueError as error:  # e.g. a checkpoint that is not there or not this model's
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(report)
    return 0 if report.correct else 1


if __name__ == "__main__":
    tfnet_flags.run(main)
