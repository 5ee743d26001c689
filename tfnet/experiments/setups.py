"""The five classic comparisons, each a list of ``TrainConfig`` variants on a fixed seed.

Every experiment states its setup (the ``--help`` of ``scripts/experiments.py`` prints it), its
variants at full length and in the shortened ``quick`` form the tests run, and the ordering its
results are expected to show (``holds``), as in the course:

- initialization (METHODS.md §2): zeros never break symmetry, randn×10 starts saturated far from a
  good solution, He keeps the activations' scale: He beats large random beats zeros;
- regularization (§3): on few noisy points an unregularised network fits the noise; L2 and
  inverted dropout give a smoother boundary and a better dev accuracy;
- optimizers (§7): at the course's small α = 0.0007, gradient descent barely moves in the epochs
  in which Adam's normalised steps fit the moons;
- lr_decay (§8): inverse-time decay applied every step makes α tiny within a few epochs, the same
  decay on a fixed interval keeps α large for longer and reaches a lower cost;
- batch_norm (§10): normalising each layer's pre-activations lets gradient descent use an α at
  which the plain network diverges.
"""

import dataclasses

from tfnet.config import TrainConfig

SEED = 0
# The course's 2-D sets have 300 training points: 375 generated, a fifth of them held out as dev.
COURSE_EXAMPLES, COURSE_TRAIN = 375, 300


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One comparison.

    Attributes:
      name: the ``--experiment`` value.
      setup: data, architecture, optimiser, α, epochs (full / quick) and seed, in words.
      expected: the ordering the results should show, in words.
      variants: ``(quick, data_dir) -> [(variant name, TrainConfig), ...]``.
      holds: ``{variant name: Row} -> bool``, whether the expected ordering holds.
      two_dimensional: the data are a 2-D set, so decision boundaries can be drawn.
      sweep: the config field grouping a learning-rate sweep plot, or None for no such plot.
      course: ``{variant: figure}``, the course's published result of a variant, as text.
      course_measure: what the course's figures measure, e.g. "train / test accuracy".
    """

    name: str
    setup: str
    expected: str
    variants: object
    holds: object
    two_dimensional: bool = True
    sweep: str = None
    course: dict = dataclasses.field(default_factory=dict)
    course_measure: str = ""


def _config(**fields):
    return TrainConfig(**{"seed": SEED, "on_nonfinite": "skip_step", **fields})


# ---- initialization ---------------------------------------------------------------------------

INITIALIZERS = ("zeros", "random_large", "he")
# The course's network on its 300 circles: full-batch gradient descent, α = 0.01, 15,000 steps.
INITIALIZATION_EPOCHS, QUICK_INITIALIZATION_EPOCHS = 15_000, 1_500


def _initialization(quick, data_dir):
    del data_dir
    epochs = QUICK_INITIALIZATION_EPOCHS if quick else INITIALIZATION_EPOCHS
    return [
        (name, _config(dataset="circles", num_examples=COURSE_EXAMPLES, hidden_units=(10, 5),
                       initializer=name, optimizer="gd", learning_rate=0.01,
                       batch_size=COURSE_TRAIN, epochs=epochs, eval_every_epochs=epochs // 15))
        for name in INITIALIZERS
    ]


INITIALIZATION = Experiment(
    name="initialization",
    setup="The course's setting: concentric circles (embedded, 300 train / 75 dev / 250 test), "
          "ReLU network 2-10-5-2, initializer zeros vs random_large (randn×10) vs he "
          "(randn×sqrt(2/n_in)), full-batch gradient descent (batch 300) α = 0.01 for 15,000 "
          "iterations (quick: 1,500), seed 0.",
    expected="dev accuracy he > random_large > zeros",
    variants=_initialization,
    holds=lambda rows: rows["he"].dev_accuracy > rows["random_large"].dev_accuracy > rows["zeros"].dev_accuracy,
    course={"zeros": "0.50 / 0.50", "random_large": "0.83 / 0.86", "he": "0.993 / 0.96"},
    course_measure="train / test accuracy",
)


# ---- regularization ---------------------------------------------------------------------------

# Moons with 5% of the 1000 examples for training: 50 noisy points that a 128-128 network fits
# exactly, while the other 950 make a dev set precise enough to rank the variants.
REGULARIZERS = {"none": {}, "l2": {"l2": 0.1}, "dropout": {"keep_prob": (0.8,)}}


def _regularization(quick, data_dir):
    # No shorter version: the regularised networks need about 300 steps to settle on their
    # smooth boundaries; before that the unregularised one is ahead.
    del quick, data_dir
    return [
        (name, _config(dataset="moons", dev_fraction=0.95, hidden_units=(128, 128),
                       optimizer="adam", learning_rate=0.01, batch_size=10,
                       epochs=60, **fields))
        for name, fields in REGULARIZERS.items()
    ]


REGULARIZATION = Experiment(
    name="regularization",
    setup="Two moons (embedded, noise σ 0.2) with dev_fraction 0.95: 50 training points, 950 dev, "
          "250 test; ReLU network 2-128-128-2 trained with Adam α = 0.01, batch 10, 60 epochs "
          "(quick: the same), seed 0; none vs L2 (λ = 0.1, cost (λ/2m)Σ‖W‖²) vs inverted "
          "dropout (keep_prob 0.8 after each hidden layer).",
    expected="dev accuracy of l2 and of dropout > none",
    variants=_regularization,
    holds=lambda rows: min(rows["l2"].dev_accuracy, rows["dropout"].dev_accuracy) > rows["none"].dev_accuracy,
)


# ---- optimizers -------------------------------------------------------------------------------

OPTIMIZERS = ("gd", "momentum", "adam", "keras_sgd", "keras_momentum", "keras_adam")
QUICK_OPTIMIZERS = ("gd", "adam")
# The course's network on its 300 moons: mini-batches of 64, α = 0.0007, 5,000 epochs. Seed 3,
# as the course seeds its initialisation (with seeds 0 and 5 the 2-unit layer starts dead here).
COURSE_EPOCHS, QUICK_COURSE_EPOCHS = 5_000, 500
COURSE_SEED = 3


def _optimizers(quick, data_dir):
    del data_dir
    epochs = QUICK_COURSE_EPOCHS if quick else COURSE_EPOCHS
    return [
        (name, _config(dataset="moons", num_examples=COURSE_EXAMPLES, hidden_units=(5, 2),
                       optimizer=name, learning_rate=0.0007, batch_size=64, epochs=epochs,
                       eval_every_epochs=epochs // 10, seed=COURSE_SEED))
        for name in (QUICK_OPTIMIZERS if quick else OPTIMIZERS)
    ]


def _adam_beats_gradient_descent(rows):
    pairs = [("adam", "gd"), ("adam", "momentum"), ("keras_adam", "keras_sgd")]
    return all(
        rows[adam].train_accuracy > rows[gd].train_accuracy and rows[adam].final_cost < rows[gd].final_cost
        for adam, gd in pairs if adam in rows and gd in rows
    )


OPTIMIZERS_EXPERIMENT = Experiment(
    name="optimizers",
    setup="The course's setting: two moons (embedded, 300 train / 75 dev / 250 test), ReLU network "
          "2-5-2-2 (He), α = 0.0007 for every optimiser, mini-batches of 64, 5,000 epochs (quick: "
          "500, gd and adam only), seed 3: gd, momentum (β 0.9), adam (β1 0.9, β2 0.999, ε 1e-8) "
          "and Keras' twins keras_sgd, keras_momentum (SGD momentum 0.9, lr α(1−β)), keras_adam.",
    expected="adam beats gd and momentum (and keras_adam beats keras_sgd) in training accuracy and "
             "final cost",
    variants=_optimizers,
    holds=_adam_beats_gradient_descent,
    course={"gd": "0.717", "momentum": "0.717", "adam": "0.94"},
    course_measure="train accuracy",
)


# ---- lr_decay ---------------------------------------------------------------------------------

DECAY_LEARNING_RATES = {"gd": 0.1, "momentum": 0.1, "adam": 0.01}
QUICK_DECAY_OPTIMIZERS = ("gd", "adam")
DECAY_INTERVAL, QUICK_DECAY_INTERVAL = 1000.0, 100.0


def _lr_decay(quick, data_dir):
    del data_dir
    epochs = QUICK_COURSE_EPOCHS if quick else COURSE_EPOCHS
    interval = QUICK_DECAY_INTERVAL if quick else DECAY_INTERVAL
    names = QUICK_DECAY_OPTIMIZERS if quick else tuple(DECAY_LEARNING_RATES)
    return [
        (f"{name}_{when}", _config(dataset="moons", num_examples=COURSE_EXAMPLES, hidden_units=(5, 2),
                                   optimizer=name, learning_rate=DECAY_LEARNING_RATES[name],
                                   lr_schedule="inverse_time", decay_rate=1.0,
                                   decay_interval=decay_interval, batch_size=64, epochs=epochs,
                                   eval_every_epochs=epochs // 10, seed=COURSE_SEED))
        for name in names
        for when, decay_interval in (("every_epoch", 1.0), (f"every_{interval:g}", interval))
    ]


def _interval_beats_every_epoch(rows):
    optimizers = {name.split("_every_", 1)[0] for name in rows}
    return all(
        min(r.final_cost for n, r in rows.items() if n.startswith(f"{o}_every_") and n != f"{o}_every_epoch")
        < rows[f"{o}_every_epoch"].final_cost
        for o in optimizers
    )


LR_DECAY = Experiment(
    name="lr_decay",
    setup="The course's setting: the optimizers experiment's moons and network, mini-batches of 64, "
          "5,000 epochs, seed 3, inverse-time decay with decay rate 1 applied every epoch, "
          "α₀/(1 + epoch) (every_epoch), vs on a fixed interval of 1,000 epochs, "
          "α₀/(1 + floor(epoch/1000)) (every_1000); α₀ = 0.1 for gd and momentum, 0.01 for adam "
          "(quick: gd and adam, 500 epochs, interval 100).",
    expected="for each optimiser, decay on the fixed interval reaches a lower final cost than decay "
             "every epoch",
    variants=_lr_decay,
    holds=_interval_beats_every_epoch,
    course={"gd_every_epoch": "≈ 0.65", "gd_every_1000": "0.943", "momentum_every_1000": "0.953",
            "adam_every_1000": "0.94"},
    course_measure="train accuracy",
)


# ---- batch_norm -------------------------------------------------------------------------------

BN_LEARNING_RATES = (0.01, 0.1, 1.0, 3.0)
QUICK_BN_LEARNING_RATES = (0.1, 1.0)


def _batch_norm(quick, data_dir):
    return [
        (f"{'bn' if batch_norm else 'plain'}_lr{alpha:g}",
         _config(dataset="mnist_t10k", data_dir=data_dir, hidden_units=(64, 32), optimizer="gd",
                 learning_rate=alpha, batch_norm=batch_norm, batch_size=64, epochs=1 if quick else 3))
        for alpha in (QUICK_BN_LEARNING_RATES if quick else BN_LEARNING_RATES)
        for batch_norm in (False, True)
    ]


def _batch_norm_tolerates_large_rates(rows):
    """At the largest α the plain network has diverged or stalled while BatchNorm still trains as
    well as at its best α (within 0.05), and BatchNorm's best α is at least the plain network's."""
    def by_rate(prefix):
        return {row.config.learning_rate: row.dev_accuracy for name, row in rows.items()
                if name.startswith(prefix + "_lr")}

    plain, bn = by_rate("plain"), by_rate("bn")
    largest = max(plain)
    best_plain_rate = max(plain, key=plain.get)
    best_bn_rate = max(bn, key=bn.get)
    return (bn[largest] > plain[largest] + 0.1 and bn[largest] >= bn[best_bn_rate] - 0.05
            and best_bn_rate >= best_plain_rate)


BATCH_NORM = Experiment(
    name="batch_norm",
    setup="mnist_t10k (TFDS, --data_dir; 6400 train / 1600 dev / 2000 test), ReLU network "
          "784-64-32-10 with and without BatchNorm before each hidden activation, mini-batch "
          "gradient descent with α in {0.01, 0.1, 1.0, 3.0}, batch 64, 3 epochs (quick: α in "
          "{0.1, 1.0}, 1 epoch), seed 0.",
    expected="at the largest α BatchNorm still trains (dev accuracy > plain + 0.1, and within 0.05 "
             "of its best), and its best α is at least the plain network's",
    variants=_batch_norm,
    holds=_batch_norm_tolerates_large_rates,
    two_dimensional=False,
    sweep="batch_norm",
)

EXPERIMENTS = {e.name: e for e in (INITIALIZATION, REGULARIZATION, OPTIMIZERS_EXPERIMENT, LR_DECAY, BATCH_NORM)}
NAMES = tuple(EXPERIMENTS)
