"""The experiments' figures: cost curves, decision boundaries on 2-D data, a learning-rate sweep.

matplotlib is loaded headless by ``tfnet.plotting``, whose cost-curve plot the experiments share
with ``tfnet.compare``.
"""

import numpy as np

from tfnet import data as data_lib
from tfnet import plotting


def plot_cost_curves(rows, path, title=None):
    """Training and dev cost of every variant at its evaluated epochs, one PNG."""
    plotting.plot_cost_curves(rows, path, title=title)


def _training_points(config):
    splits = data_lib.load(config.dataset, config.data_dir, config.dev_fraction,
                           num_examples=config.num_examples)
    x, y = data_lib.in_memory(splits.train)
    return x.numpy(), y.numpy()


def plot_decision_boundaries(rows, path, resolution=200):
    """Each variant's predicted class over the plane, with its training points, one panel each."""
    plt = plotting.pyplot()
    columns = min(3, len(rows))
    lines = -(-len(rows) // columns)
    figure, axes = plt.subplots(lines, columns, figsize=(4 * columns, 3.6 * lines), squeeze=False)
    for axis, row in zip(axes.flat, rows):
        x, y = _training_points(row.config)
        low, high = x.min(axis=0) - 0.5, x.max(axis=0) + 0.5
        u, v = np.meshgrid(np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution))
        grid = np.stack([u.ravel(), v.ravel()], axis=1).astype(np.float32)
        predicted = np.argmax(row.model(grid, training=False), axis=1)
        axis.contourf(u, v, predicted.reshape(u.shape), levels=[-0.5, 0.5, 1.5], cmap="coolwarm", alpha=0.35)
        axis.scatter(x[:, 0], x[:, 1], c=y, cmap="coolwarm", s=8, edgecolors="k", linewidths=0.2)
        axis.set_title(f"{row.name}: dev acc {row.dev_accuracy:.3f}", fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
    for axis in list(axes.flat)[len(rows):]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def plot_learning_rate_sweep(rows, group_by, path):
    """Dev accuracy against α (log scale), one line per value of the config field ``group_by``."""
    plt = plotting.pyplot()
    groups = {}
    for row in rows:
        groups.setdefault(getattr(row.config, group_by), []).append(row)
    figure, axis = plt.subplots(figsize=(6, 4))
    for value, members in groups.items():
        members = sorted(members, key=lambda r: r.config.learning_rate)
        axis.plot([r.config.learning_rate for r in members], [r.dev_accuracy for r in members],
                  marker="o", label=f"{group_by}={value}")
    axis.set(xscale="log", xlabel="learning rate α", ylabel="dev accuracy", ylim=(0, 1),
             title="learning-rate sensitivity")
    axis.legend()
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
