"""Side-by-side comparison of optimisers (ours and Keras' built-ins) on one model and one data order.

``compare(config, output_dir)`` trains the classifier of ``tfnet.training`` once per optimiser
through ``tfnet.training.train`` itself: every run starts from the same initial weights and sees
the same sequence of mini-batches (both are functions of the seed alone), so the runs differ in
the optimiser only. It returns one ``RunResult`` per optimiser (loss curves, final train/dev loss
and accuracy, epochs to a target loss, ms per step); each run's TensorBoard logs go to
``output_dir/<optimizer>/`` so that the curves overlay. ``bowl_paths`` runs the optimisers on an
elongated quadratic bowl, the lecture's picture: gradient descent zig-zags across the narrow
axis, momentum / RMSprop / Adam do not. ``plot_loss_curves`` and ``plot_bowl_paths`` draw both.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

import keras
from tfnet import config as config_lib
from tfnet import optimizers, plotting, training

@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """What to compare and on what; each field is a flag of ``scripts/compare_optimizers.py``."""

    optimizers: tuple = config_lib.setting(
        optimizers.NAMES, "Registry names to compare, ours and Keras' (tfnet.optimizers.NAMES).",
        config_lib.names_among(*optimizers.NAMES))
    learning_rate_factor: float = config_lib.setting(
        10.0, "Each optimiser trains with its registry default learning rate times this (Keras' "
        "defaults, 0.01 for gd, momentum and their twins and 0.001 for rmsprop, adam and theirs, "
        "are for long runs: 30 epochs of moons want steps ten times as large).",
        config_lib.positive)
    dataset: str = config_lib.shared("dataset")
    data_dir: str = config_lib.shared("data_dir")
    label_column: str = config_lib.shared("label_column")
    model: str = config_lib.shared("model")
    conv_filters: tuple = config_lib.shared("conv_filters")
    hidden_units: tuple = config_lib.shared("hidden_units", (16, 16))
    batch_size: int = config_lib.setting(64, "Mini-batch size b.", config_lib.positive_int)
    epochs: int = config_lib.setting(30, "Passes over the training split.", config_lib.positive_int)
    target_loss: float = config_lib.setting(
        0.2, "The training loss whose first epoch is reported.", config_lib.positive)
    seed: int = config_lib.setting(0, "Seeds the initial weights and the mini-batch order (the same "
                                   "for every optimiser).")


@dataclasses.dataclass
class RunResult:
    name: str
    epochs: list  # 1, 2, ..., the evaluated epochs
    train_loss: list  # per evaluated epoch, on the training examples the history evaluates
    dev_loss: list
    train_accuracy: float  # of the final model, on the whole training split
    dev_accuracy: float
    epochs_to_target: int  # first epoch (1-based) with train loss <= target, or None
    ms_per_step: float  # the training loop's steady-state time per step (compilation excluded)


def train_config(config, name, run_dir):
    """The ``TrainConfig`` of optimiser ``name``'s run: only the optimiser and α differ."""
    alpha = optimizers.RECORDS[name].default_learning_rate * config.learning_rate_factor
    return config_lib.TrainConfig(
        dataset=config.dataset, data_dir=config.data_dir, label_column=config.label_column,
        model=config.model, conv_filters=tuple(config.conv_filters),
        hidden_units=tuple(config.hidden_units),
        batch_size=config.batch_size, epochs=config.epochs, seed=config.seed, optimizer=name,
        learning_rate=alpha, model_dir=run_dir, export=False, resume=False, overwrite=True,
        checkpoint_every_seconds=0.0,
    )


def compare(config, output_dir):
    """Trains one model per optimiser in ``config.optimizers``; returns their ``RunResult``s."""
    unknown = [name for name in config.optimizers if name not in optimizers.NAMES]
    if unknown:
        raise ValueError(f"optimizers must be among {', '.join(optimizers.NAMES)}. Received: {unknown}")
    results = []
    for name in config.optimizers:
        result = training.train(train_config(config, name, os.path.join(output_dir, name)), verbose=0)
        train_loss = [record["train_loss"] for record in result.history]
        reached = [e for e, loss in enumerate(train_loss, start=1) if loss <= config.target_loss]
        results.append(RunResult(
            name=name, epochs=[record["epoch"] for record in result.history],
            train_loss=train_loss, dev_loss=[r["dev_loss"] for r in result.history],
            train_accuracy=result.train_accuracy, dev_accuracy=result.dev_accuracy,
            epochs_to_target=reached[0] if reached else None,
            ms_per_step=1000 * (result.seconds_per_step or float("nan")),
        ))
    return results


def format_table(results, target_loss):
    """The comparison as a markdown table."""
    lines = [
        f"| optimizer | train loss | dev loss | train acc | dev acc | epochs to loss <= {target_loss} | ms/step |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        reached = "-" if r.epochs_to_target is None else str(r.epochs_to_target)
        lines.append(
            f"| {r.name} | {r.train_loss[-1]:.4f} | {r.dev_loss[-1]:.4f} | {r.train_accuracy:.3f} | "
            f"{r.dev_accuracy:.3f} | {reached} | {r.ms_per_step:.3f} |"
        )
    return "\n".join(lines)


# ---- the elongated bowl ---------------------------------------------------------------------

# J(w) = (curvature₁ w₁² + curvature₂ w₂²) / 2: w₂ is the narrow (steep) axis.
BOWL_CURVATURE = (1.0, 20.0)
BOWL_START = (-4.0, 1.0)
# α per optimiser: gradient descent at α·20 = 1.8, inside its stability limit of 2, where each
# step overshoots the narrow axis; the others at an α of the same reach.
BOWL_OPTIMIZERS = {
    "gd": lambda: optimizers.get("gd", 0.09),
    "momentum": lambda: optimizers.get("momentum", 0.09, beta=0.9),
    "rmsprop": lambda: optimizers.get("rmsprop", 0.1, beta2=0.9),
    "adam": lambda: optimizers.get("adam", 0.3),
}


def bowl_paths(steps=40):
    """``{name: array (steps + 1, 2)}``: each optimiser's path on the bowl from BOWL_START."""
    curvature = tf.constant(BOWL_CURVATURE)
    paths = {}
    for name, make in BOWL_OPTIMIZERS.items():
        w, optimizer = keras.Variable(np.array(BOWL_START, np.float32)), make()
        path = [w.numpy()]
        for _ in range(steps):
            optimizer.apply([curvature * w.value], [w])  # ∇J = curvature ⊙ w
            path.append(w.numpy())
        paths[name] = np.array(path)
    return paths


def narrow_axis_crossings(path, threshold=0.1):
    """How often a path jumps across the narrow axis (w₂ changes sign with |w₂| > threshold
    on both sides): large zig-zags, not the small jitter of a settled adaptive step."""
    w2 = path[:, 1]
    large = np.abs(w2) > threshold
    return int(np.sum((np.sign(w2[1:]) != np.sign(w2[:-1])) & large[1:] & large[:-1]))


# ---- plots (optional matplotlib, see tfnet.plotting) ---------------------------------------

def plot_loss_curves(results, path):
    """Training and dev loss per epoch of every run (``tfnet.plotting.plot_cost_curves``)."""
    plotting.plot_cost_curves(results, path, title="optimisers from the same start, same batches")


def plot_bowl_paths(paths, path):
    """The optimisers' paths over the contours of the bowl, one PNG."""
    plt = plotting.pyplot()
    w1, w2 = np.meshgrid(np.linspace(-4.5, 1.5, 200), np.linspace(-1.5, 1.5, 200))
    cost = 0.5 * (BOWL_CURVATURE[0] * w1**2 + BOWL_CURVATURE[1] * w2**2)
    figure, axes = plt.subplots(figsize=(9, 4.5))
    axes.contour(w1, w2, cost, levels=20, colors="lightgray")
    for name, points in paths.items():
        axes.plot(points[:, 0], points[:, 1], marker=".", label=f"{name} ({narrow_axis_crossings(points)} zig-zags)")
    axes.plot(0, 0, "k*", markersize=12)
    axes.set(xlabel="w1 (shallow)", ylabel="w2 (steep)",
             title=f"J = ({BOWL_CURVATURE[0]:g} w1² + {BOWL_CURVATURE[1]:g} w2²) / 2")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def run(config, output_dir):
    """The whole comparison: trains, writes TensorBoard runs and both PNGs under ``output_dir``.

    Writes one run directory per optimiser, ``output_dir/<optimizer>/`` (TensorBoard ``train/``
    and ``dev/``), and ``output_dir/loss_curves.png`` and ``output_dir/bowl_paths.png``; returns
    the report (markdown tables, then where the figures and runs went) as text.
    """
    os.makedirs(output_dir, exist_ok=True)
    results = compare(config, output_dir)
    curves, bowl_png = os.path.join(output_dir, "loss_curves.png"), os.path.join(output_dir, "bowl_paths.png")
    plot_loss_curves(results, curves)
    paths = bowl_paths()
    plot_bowl_paths(paths, bowl_png)
    bowl = ["| optimizer | zig-zags across the narrow axis | distance to minimum after 40 steps |",
            "| --- | --- | --- |"]
    bowl += [f"| {name} | {narrow_axis_crossings(p)} | {np.linalg.norm(p[-1]):.3g} |" for name, p in paths.items()]
    where = (f"Loss curves: {curves}\nPaths on the bowl: {bowl_png}\n"
             f"TensorBoard: tensorboard --logdir {output_dir}")
    return format_table(results, config.target_loss) + "\n\n" + "\n".join(bowl) + "\n\n" + where
