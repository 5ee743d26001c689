"""The study's protocol: tune α on dev, rerun the chosen α over seeds, read test only then.

Per problem and optimiser (DeepOBS, Schneider et al. 2019):

1. **Tuning**: one trial per learning rate of a log grid of ``lr_points`` values spanning the
   optimiser record's ``learning_rate_range``, seed 0, other hyperparameters at the training
   flags' defaults (β = 0.9, β₁ = 0.9, β₂ = 0.999: the course's for momentum and Adam; RMSprop
   takes the same β₂, where the course's is 0.9); these trials never evaluate the test split.
2. **Choice**: the α whose trial ends with the highest dev accuracy (ties: the lower dev loss,
   then the smaller α); a trial that diverged (a non-finite cost) is never chosen.
3. **Seeds**: the chosen α trained with ``seeds`` seeds (0 is the tuning trial, finished again
   with its test evaluation), which change the initial weights and the mini-batch order; only
   these trials read the test split.

Summaries: the median and interquartile range over seeds of test accuracy, and of steps and
seconds to the problem's target dev accuracy (a seed that never reaches it counts as never); an
optimiser and its Keras twin *differ beyond the seed spread* when their test accuracies'
interquartile ranges do not overlap.
"""

import dataclasses
import math
import os

import numpy as np

from tfnet import config as config_lib
from tfnet import optimizers
from tfnet.study import problems as problems_lib


def _problem_names(name, value):
    if not value or any(not v or v != v.strip() for v in value) or len(set(value)) != len(value):
        config_lib.fail(name, "a comma-separated list of distinct embedded sets (moons, circles, "
                        "flower) or TFDS datasets", ",".join(value))


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """The study; each field is a flag of ``scripts/study_optimizers.py``."""

    problems: tuple = config_lib.setting(
        tuple(problems_lib.EMBEDDED), "Problems: the embedded sets (moons, circles, flower) "
        "and any TFDS image dataset prepared in --data_dir (e.g. mnist_t10k). Each states its "
        "network, batch size, epochs and target dev accuracy (the README lists them).",
        _problem_names)
    optimizers: tuple = config_lib.setting(
        optimizers.NAMES, "Optimisers: ours and Keras' twins (tfnet.optimizers.NAMES).",
        config_lib.names_among(*optimizers.NAMES))
    lr_points: int = config_lib.setting(
        7, "Learning rates tuned per problem and optimiser: a log grid over the optimiser's "
        "range (1e-3 to 1 for gd, momentum and their twins; 1e-4 to 0.1 for rmsprop, adam and "
        "theirs).", config_lib.positive_int)
    seeds: int = config_lib.setting(
        5, "Seeds the chosen learning rate is trained with (initial weights and batch order).",
        config_lib.positive_int)
    epochs: int = config_lib.setting(
        0, "Epochs of every trial; 0: each problem's own budget.", config_lib.non_negative_int)
    output_dir: str = config_lib.setting(
        "runs/study", "Where results.csv, report.md, the PNGs and one run directory per trial go.")
    data_dir: str = config_lib.setting(
        None, "TFDS data directory holding the image datasets named in --problems.")


@dataclasses.dataclass(frozen=True)
class Trial:
    """One training run of the study."""

    problem: str
    optimizer: str
    learning_rate: float
    seed: int
    evaluate_test: bool  # False while tuning

    @property
    def name(self):
        return f"{self.problem}/{self.optimizer}/lr{self.learning_rate:.3g}-seed{self.seed}"

    def train_config(self, config):
        problem = problems_lib.get(self.problem)
        return config_lib.TrainConfig(
            dataset=self.problem, data_dir=config.data_dir, hidden_units=problem.hidden_units,
            batch_size=problem.batch_size, epochs=config.epochs or problem.epochs,
            optimizer=self.optimizer, learning_rate=self.learning_rate, seed=self.seed,
            model_dir=os.path.join(config.output_dir, "runs", self.name), export=False,
            evaluate_test=self.evaluate_test, checkpoint_every_seconds=0.0,
        )


def learning_rates(optimizer, points):
    """The log grid of ``points`` learning rates over the optimiser's range (both ends in)."""
    low, high = optimizers.RECORDS[optimizer].learning_rate_range
    if points == 1:
        return [float(math.sqrt(low * high))]
    return [float(v) for v in np.logspace(math.log10(low), math.log10(high), points)]


def tuning_trials(config):
    return [Trial(problem, optimizer, rate, 0, False)
            for problem in config.problems for optimizer in config.optimizers
            for rate in learning_rates(optimizer, config.lr_points)]


def choose(records):
    """The chosen learning rate among one problem's and optimiser's tuning records: the highest
    final dev accuracy, then the lowest dev loss, then the smallest α; None if all diverged."""
    finished = [r for r in records if not r["diverged"]]
    if not finished:
        return None
    best = min(finished, key=lambda r: (-r["dev_accuracy"], r["dev_loss"], r["learning_rate"]))
    return best["learning_rate"]


def choose_all(config, tuning_rows, partial=False):
    """``({(problem, optimizer): chosen α}, [(problem, optimizer) whose every α diverged])``;
    with ``partial``, of the pairs whose every tuning trial has its row, the others left out."""
    chosen, unchosen = {}, []
    for problem in config.problems:
        for optimizer in config.optimizers:
            records = [r for r in tuning_rows
                       if (r["problem"], r["optimizer"]) == (problem, optimizer)]
            if partial and len(records) < config.lr_points:
                continue
            rate = choose(records)
            if rate is None:
                unchosen.append((problem, optimizer))
            else:
                chosen[problem, optimizer] = rate
    return chosen, unchosen


def seed_trials(config, chosen):
    """The chosen learning rates, ``{(problem, optimizer): α}``, trained with every seed."""
    return [Trial(problem, optimizer, rate, seed, True)
            for (problem, optimizer), rate in chosen.items() for seed in range(config.seeds)]


def quartiles(values):
    """(25th percentile, median, 75th percentile) of the finite ``values`` (NaN if none)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return (math.nan,) * 3
    return tuple(float(q) for q in np.percentile(values, [25, 50, 75]))


def differ_beyond_spread(a, b):
    """Whether two (q25, median, q75) triples' interquartile ranges do not overlap."""
    return a[2] < b[0] or b[2] < a[0]
