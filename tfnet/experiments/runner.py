"""Runs one experiment's variants through ``tfnet.training.train`` and writes its report.

Each variant is one ``TrainConfig`` trained from scratch (fixed seed) into its own run directory
``<output_dir>/<experiment>/<variant>/`` (TensorBoard ``train/`` and ``dev/`` runs, results.json),
so that ``tensorboard --logdir <output_dir>/<experiment>`` overlays the variants. The experiment's
directory then receives ``results.md`` and ``results.csv`` (one row per variant: train / dev /
test accuracy, final training cost, wall time), ``cost_curves.png`` and, for 2-D data,
``decision_boundaries.png`` (plus ``learning_rate_sweep.png`` where the variants sweep α).
"""

import csv
import dataclasses
import os
import time


from tfnet import training
from tfnet.experiments import plots


@dataclasses.dataclass
class Row:
    """One trained variant."""

    name: str  # the variant
    train_accuracy: float
    dev_accuracy: float
    test_accuracy: float
    final_cost: float  # cross-entropy on the whole training split after the last epoch
    seconds: float  # wall time of the whole train() call
    course: str  # the course's published figure for this variant, or ""
    epochs: list = dataclasses.field(repr=False)  # the evaluated epochs
    train_loss: list = dataclasses.field(repr=False)  # at each evaluated epoch
    dev_loss: list = dataclasses.field(repr=False)
    learning_rate: list = dataclasses.field(repr=False)  # α after each evaluated epoch
    model: object = dataclasses.field(repr=False)
    config: object = dataclasses.field(repr=False)


@dataclasses.dataclass
class Report:
    experiment: str
    rows: dict  # variant -> Row, in the experiment's order
    holds: bool  # the experiment's expected ordering holds on these rows
    markdown: str
    output_dir: str
    figures: list  # the PNGs written


def train_variant(variant, config, run_dir, verbose, course=""):
    """Trains one variant into ``run_dir`` (any run already there is replaced); returns its Row."""
    config = dataclasses.replace(
        config, model_dir=run_dir, export=False, resume=False, overwrite=True,
        # Only the final checkpoint: a run here is never resumed, only compared.
        checkpoint_every_steps=0, checkpoint_every_seconds=0.0,
    )
    started = time.perf_counter()
    result = training.train(config, verbose=verbose)
    return Row(
        name=variant, train_accuracy=result.train_accuracy, dev_accuracy=result.dev_accuracy,
        test_accuracy=result.test_accuracy, final_cost=result.train_loss,
        seconds=time.perf_counter() - started, course=course,
        epochs=[r["epoch"] for r in result.history],
        train_loss=[r["train_loss"] for r in result.history],
        dev_loss=[r["dev_loss"] for r in result.history],
        learning_rate=[r["learning_rate"] for r in result.history], model=result.model, config=config,
    )


def format_table(rows, course_measure=""):
    """The rows as a markdown table, the course's figures beside ours when it published any."""
    course = bool(course_measure)
    lines = ["| variant | train acc | dev acc | test acc | final cost | wall s |"
             + (f" course ({course_measure}) |" if course else ""),
             "| --- | --- | --- | --- | --- | --- |" + (" --- |" if course else "")]
    lines += [
        f"| {r.name} | {r.train_accuracy:.3f} | {r.dev_accuracy:.3f} | {r.test_accuracy:.3f} "
        f"| {r.final_cost:.4g} | {r.seconds:.1f} |" + (f" {r.course or '—'} |" if course else "")
        for r in rows
    ]
    return "\n".join(lines)


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "train_accuracy", "dev_accuracy", "test_accuracy", "final_cost",
                         "seconds", "course"])
        for r in rows:
            writer.writerow([r.name, r.train_accuracy, r.dev_accuracy, r.test_accuracy,
                             r.final_cost, r.seconds, r.course])


def run(experiment, output_dir, quick=False, data_dir=None, verbose=1):
    """Trains every variant of ``experiment`` and writes its report under ``output_dir``.

    Args:
      experiment: a ``tfnet.experiments.setups.Experiment``.
      output_dir: root directory; this experiment writes to ``output_dir/<experiment.name>``.
      quick: the shortened settings (fewer epochs and variants) that the tests use. Default False.
      data_dir: TFDS data directory, for the experiments on a TFDS dataset. Default None.
      verbose: 0 silent, 1 one progress line per variant. Default 1.

    Returns:
      A ``Report``.
    """
    directory = os.path.join(output_dir, experiment.name)
    os.makedirs(directory, exist_ok=True)
    variants = experiment.variants(quick, data_dir)
    rows = {}
    for index, (variant, config) in enumerate(variants, start=1):
        if verbose:
            print(f"[{experiment.name} {index}/{len(variants)}] {variant}: {config.epochs} epochs ...", flush=True)
        row = train_variant(variant, config, os.path.join(directory, variant), verbose=0,
                            course=experiment.course.get(variant, ""))
        rows[variant] = row
        if verbose:
            course = f" | course: {row.course}" if row.course else ""
            print(f"    train {row.train_accuracy:.3f} dev {row.dev_accuracy:.3f} test "
                  f"{row.test_accuracy:.3f} cost {row.final_cost:.4g} ({row.seconds:.1f}s){course}",
                  flush=True)
    ordered = list(rows.values())
    write_csv(ordered, os.path.join(directory, "results.csv"))
    figures = [os.path.join(directory, "cost_curves.png")]
    plots.plot_cost_curves(ordered, figures[-1], title=experiment.name)
    if experiment.two_dimensional:
        figures.append(os.path.join(directory, "decision_boundaries.png"))
        plots.plot_decision_boundaries(ordered, figures[-1])
    if experiment.sweep is not None:
        figures.append(os.path.join(directory, "learning_rate_sweep.png"))
        plots.plot_learning_rate_sweep(ordered, experiment.sweep, figures[-1])
    holds = bool(experiment.holds(rows))
    markdown = (
        f"### {experiment.name}\n\n{experiment.setup}\n\n"
        f"{format_table(ordered, experiment.course_measure)}\n\n"
        f"Expected: {experiment.expected} — {'holds' if holds else 'DOES NOT HOLD'}.\n"
    )
    with open(os.path.join(directory, "results.md"), "w") as f:
        f.write(markdown)
    return Report(experiment.name, rows, holds, markdown, directory, figures)
