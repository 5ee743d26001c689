"""The study's outputs: results.csv, report.md, sensitivity.png, profile.png, the HParams experiment.

- ``results.csv``: one row per trial (problem × optimiser × learning rate × seed): its phase
  (tuning or seeds), whether it diverged, final train / dev / test loss and accuracy (test only
  for the seeds of the chosen rate), steps and seconds to the problem's target dev accuracy;
- ``report.md``: per problem, each optimiser's chosen α, the median and interquartile range over
  seeds of its test accuracy, its median steps to the target, and for each of ours and its Keras
  twin whether they differ beyond the seed spread;
- ``sensitivity.png``: dev accuracy against α, one panel per problem, the seeds' interquartile
  range shaded at each chosen α;
- ``profile.png``: the performance profile of steps to the target over the problems (as
  MLCommons AlgoPerf draws it): for each optimiser, the fraction of problems on which its median
  steps to the target is within a factor τ of the best optimiser's, against τ;
- the HParams experiment in ``output_dir``, so that ``tensorboard --logdir <output_dir>`` shows
  every trial with its problem, optimiser, learning rate and seed.
"""

import csv
import math
import os

import numpy as np

from tfnet import optimizers, plotting
from tfnet.study import problems as problems_lib
from tfnet.study import protocol

COLUMNS = ("problem", "optimizer", "counterpart", "learning_rate", "seed", "phase", "diverged",
           "train_loss", "train_accuracy", "dev_loss", "dev_accuracy", "test_loss",
           "test_accuracy", "steps", "seconds", "target", "steps_to_target", "seconds_to_target")


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in COLUMNS})


def summaries(config, chosen, seed_rows):
    """``{(problem, optimizer): summary}`` of the seed trials of each chosen α."""
    result = {}
    for (problem, optimizer), rate in chosen.items():
        rows = [r for r in seed_rows if (r["problem"], r["optimizer"]) == (problem, optimizer)]
        reached = [r["steps_to_target"] for r in rows if r["steps_to_target"] is not None]
        result[problem, optimizer] = dict(
            learning_rate=rate,
            test_accuracy=protocol.quartiles([r["test_accuracy"] for r in rows]),
            dev_accuracy=protocol.quartiles([r["dev_accuracy"] for r in rows]),
            # A seed that never reached the target counts as never (inf) in the median.
            steps_to_target=float(np.median([r["steps_to_target"] if r["steps_to_target"]
                                             is not None else math.inf for r in rows])),
            reached=len(reached), seeds=len(rows),
        )
    return result


def markdown(config, chosen, summary, unchosen):
    """The report: a table per problem, and which twins differ beyond the seed spread."""
    lines = ["# Optimiser study", "",
             f"Protocol: α tuned on dev over a log grid of {config.lr_points} values per optimiser "
             f"(seed 0, test never read), the chosen α trained with {config.seeds} seeds; test "
             "accuracy as median [interquartile range] over seeds; steps to the target as the "
             "median over seeds (∞: most seeds never reached it).", ""]
    verdicts = []
    for problem in config.problems:
        spec = problems_lib.get(problem)
        lines += [f"## {spec.describe(config.epochs)}", "",
                  "| optimizer | chosen α | test accuracy | dev accuracy | steps to target | "
                  "reached |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for optimizer in config.optimizers:
            s = summary.get((problem, optimizer))
            if s is None:
                lines.append(f"| {optimizer} | all diverged | | | | |")
                continue
            q25, median, q75 = s["test_accuracy"]
            lines.append(
                f"| {optimizer} | {s['learning_rate']:.3g} | {median:.4f} [{q25:.4f}, {q75:.4f}] "
                f"| {s['dev_accuracy'][1]:.4f} | {_steps(s['steps_to_target'])} | "
                f"{s['reached']}/{s['seeds']} |")
        lines.append("")
        for ours, twin in optimizers.TWINS.items():
            if (problem, ours) in summary and (problem, twin) in summary:
                a, b = summary[problem, ours]["test_accuracy"], summary[problem, twin]["test_accuracy"]
                differ = protocol.differ_beyond_spread(a, b)
                verdicts.append(differ)
                lines.append(f"- {ours} vs {twin}: test accuracy {a[1]:.4f} vs {b[1]:.4f}, "
                             + ("**differ beyond the seed spread**" if differ else
                                "within the seed spread"))
        lines.append("")
    if unchosen:
        lines += ["Every learning rate diverged for: "
                  + ", ".join(f"{p} / {o}" for p, o in unchosen), ""]
    lines.append(f"Of {len(verdicts)} comparisons of ours with its Keras twin, "
                 f"{sum(verdicts)} {'differs' if sum(verdicts) == 1 else 'differ'} beyond the "
                 "seed spread.")
    return "\n".join(lines) + "\n"


def _steps(value):
    return "∞" if math.isinf(value) else f"{value:,.0f}"


def plot_sensitivity(config, tuning_rows, summary, path):
    """Dev accuracy against α per problem (one panel each), the seeds' IQR at the chosen α."""
    plt = plotting.pyplot()
    columns = len(config.problems)
    figure, axes = plt.subplots(1, columns, figsize=(5 * columns, 4), squeeze=False)
    styles = plotting.twin_styles(list(config.optimizers))
    for axis, problem in zip(axes[0], config.problems):
        for optimizer in config.optimizers:
            rows = sorted((r for r in tuning_rows if (r["problem"], r["optimizer"]) == (problem, optimizer)),
                          key=lambda r: r["learning_rate"])
            rates = [r["learning_rate"] for r in rows]
            accuracy = [math.nan if r["diverged"] else r["dev_accuracy"] for r in rows]
            axis.plot(rates, accuracy, label=optimizer, **{"marker": "o", **styles[optimizer]})
            s = summary.get((problem, optimizer))
            if s is not None:
                q25, _, q75 = s["dev_accuracy"]
                width = s["learning_rate"] * 0.15
                axis.fill_between([s["learning_rate"] - width, s["learning_rate"] + width],
                                  q25, q75, color=styles[optimizer]["color"], alpha=0.3)
        axis.set(xscale="log", xlabel="learning rate α", title=problems_lib.get(problem).name)
        axis.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("dev accuracy")
    figure.suptitle("dev accuracy after tuning (seed 0); shaded: the seeds' IQR at each chosen α")
    figure.legend(*axes[0][0].get_legend_handles_labels(), loc="center left",
                  bbox_to_anchor=(1.0, 0.5), frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def performance_profile(config, summary, taus):
    """``{optimizer: [fraction of problems with steps ≤ τ · best, for each τ]}``."""
    profile = {optimizer: [] for optimizer in config.optimizers}
    ratios = {optimizer: [] for optimizer in config.optimizers}
    for problem in config.problems:
        steps = {o: summary[problem, o]["steps_to_target"] if (problem, o) in summary else math.inf
                 for o in config.optimizers}
        best = min(steps.values())
        for optimizer, value in steps.items():
            ratios[optimizer].append(value / best if math.isfinite(best) else math.inf)
    for optimizer in config.optimizers:
        profile[optimizer] = [float(np.mean([r <= tau for r in ratios[optimizer]])) for tau in taus]
    return profile


def plot_profile(config, summary, path):
    plt = plotting.pyplot()
    taus = np.logspace(0, 1.5, 200)
    profile = performance_profile(config, summary, taus)
    styles = plotting.twin_styles(list(config.optimizers))
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for optimizer, fractions in profile.items():
        style = {k: v for k, v in styles[optimizer].items() if k != "marker"}
        axis.step(taus, fractions, where="post", label=optimizer, **style)
    axis.set(xscale="log", xlabel="τ (steps to the target, as a multiple of the best optimiser's)",
             ylabel="fraction of problems", ylim=(-0.02, 1.02),
             title="performance profile of steps to the target dev accuracy")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def write_hparams_config(output_dir):
    """The HParams experiment of the study: each trial's problem, optimiser, α and seed, and the
    runs' dev and train accuracy and loss."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    from tfnet.training import outputs

    hparams = [hp.HParam("dataset"), hp.HParam("optimizer", hp.Discrete(list(optimizers.NAMES))),
               hp.HParam("learning_rate"), hp.HParam("seed"), hp.HParam("hidden_units"),
               hp.HParam("batch_size"), hp.HParam("epochs")]
    with tf.summary.create_file_writer(output_dir).as_default():
        hp.hparams_config(hparams=hparams, metrics=outputs.metrics())


def write(config, rows, chosen, unchosen):
    """Writes every output into ``config.output_dir``; returns the report and the files' paths."""
    tuning_rows = [r for r in rows if r["phase"] == "tuning"]
    seed_rows = [r for r in rows if r["phase"] == "seeds"]
    summary = summaries(config, chosen, seed_rows)
    paths = {name: os.path.join(config.output_dir, name)
             for name in ("results.csv", "report.md", "sensitivity.png", "profile.png")}
    write_csv(rows, paths["results.csv"])
    text = markdown(config, chosen, summary, unchosen)
    with open(paths["report.md"], "w") as f:
        f.write(text)
    plot_sensitivity(config, tuning_rows, summary, paths["sensitivity.png"])
    plot_profile(config, summary, paths["profile.png"])
    write_hparams_config(config.output_dir)
    return text, paths
