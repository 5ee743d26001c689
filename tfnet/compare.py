"""Side-by-side comparison of optimisers (ours and Keras' built-ins) on one model and one data order.

``compare(config)`` trains the foundation's MLP on a 2-D set once per optimiser, every run from
the same initial weights and on the same sequence of mini-batches, and returns one ``RunResult``
per optimiser (loss curves, final train/dev loss and accuracy, epochs to a target loss, ms per
step); each run's per-epoch losses also go to TensorBoard, one run directory per optimiser so the
curves overlay. ``bowl_paths`` runs the optimisers on an elongated quadratic bowl, the lecture's
picture: gradient descent zig-zags across the narrow axis, momentum / RMSprop / Adam do not.
``plot_loss_curves`` and ``plot_bowl_paths`` draw both (matplotlib, the ``plots`` extra).
"""

import dataclasses
import os
import time

import numpy as np
import tensorflow as tf

import keras
from tfnet import data, model, optimizers, plotting

ADAPTIVE = ("rmsprop", "adam", "keras_rmsprop", "keras_adam")


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """What to compare and on what.

    Args:
      optimizers: registry names (``tfnet.optimizers.NAMES``). Defaults to all.
      learning_rate: α of gradient descent and momentum (and their Keras twins). Default 0.1.
      adaptive_learning_rate: α of RMSprop and Adam (and their twins). Default 0.01.
      dataset: a 2-D set of ``tfnet.data.make_embedded``. Default "moons".
      num_train, num_dev: examples in each split (dev drawn with seed + 1). Defaults 1000, 500.
      hidden_units: the MLP's hidden layers. Default (16, 16).
      batch_size: b. Default 64.
      epochs: passes over the training set. Default 30.
      target_loss: the training loss whose first epoch is reported. Default 0.2.
      seed: seeds the data, the initial weights and the mini-batch order. Default 0.
      logdir: TensorBoard root (one sub-directory per optimiser), or None. Default None.
    """

    optimizers: tuple = optimizers.NAMES
    learning_rate: float = 0.1
    adaptive_learning_rate: float = 0.01
    dataset: str = "moons"
    num_train: int = 1000
    num_dev: int = 500
    hidden_units: tuple = (16, 16)
    batch_size: int = 64
    epochs: int = 30
    target_loss: float = 0.2
    seed: int = 0
    logdir: str = None


@dataclasses.dataclass
class RunResult:
    name: str
    train_loss: list  # per epoch, on the whole training split after the epoch
    dev_loss: list
    train_accuracy: float  # after the last epoch
    dev_accuracy: float
    epochs_to_target: int  # first epoch (1-based) with train loss <= target, or None
    ms_per_step: float  # median over epochs 2.. (epoch 1 includes tracing)


def compare(config):
    """Trains one model per optimiser in ``config.optimizers``; returns their ``RunResult``s."""
    unknown = [name for name in config.optimizers if name not in optimizers.NAMES]
    if unknown:
        raise ValueError(f"optimizers must be among {', '.join(optimizers.NAMES)}. Received: {unknown}")
    x_train, y_train = data.make_embedded(config.dataset, config.num_train, seed=config.seed)
    x_dev, y_dev = data.make_embedded(config.dataset, config.num_dev, seed=config.seed + 1)
    mean, variance = x_train.mean(axis=0), x_train.var(axis=0)
    initial = model.build_model((2,), 2, config.hidden_units, mean, variance, seed=config.seed).get_weights()
    # One permutation per epoch, shared by every optimiser: the same mini-batch order.
    rng = np.random.default_rng(config.seed)
    orders = [rng.permutation(config.num_train) for _ in range(config.epochs)]
    return [
        _train(name, config, initial, orders, (x_train, y_train), (x_dev, y_dev), mean, variance)
        for name in config.optimizers
    ]


def _train(name, config, initial, orders, train, dev, mean, variance):
    net = model.build_model((2,), 2, config.hidden_units, mean, variance, seed=config.seed)
    net.set_weights(initial)
    alpha = config.adaptive_learning_rate if name in ADAPTIVE else config.learning_rate
    optimizer = optimizers.get(name, alpha)
    optimizer.build(net.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, net(x, training=True))
        optimizer.apply(tape.gradient(loss, net.trainable_variables), net.trainable_variables)

    def evaluate(x, y):
        logits = net(x, training=False)
        accuracy = float(np.mean(np.argmax(logits, axis=1) == y))
        return float(loss_fn(y, logits)), accuracy

    writer = tf.summary.create_file_writer(os.path.join(config.logdir, name)) if config.logdir else None
    train_losses, dev_losses, epoch_ms = [], [], []
    for epoch, order in enumerate(orders, start=1):
        batches = [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        start = time.perf_counter()
        for batch in batches:
            train_step(train[0][batch], train[1][batch])
        epoch_ms.append(1000 * (time.perf_counter() - start) / len(batches))
        (train_loss, train_accuracy), (dev_loss, dev_accuracy) = evaluate(*train), evaluate(*dev)
        train_losses.append(train_loss)
        dev_losses.append(dev_loss)
        if writer:
            with writer.as_default(step=epoch):
                tf.summary.scalar("loss/train", train_loss)
                tf.summary.scalar("loss/dev", dev_loss)
                tf.summary.scalar("accuracy/dev", dev_accuracy)
    if writer:
        writer.close()
    reached = [e for e, loss in enumerate(train_losses, start=1) if loss <= config.target_loss]
    return RunResult(
        name=name, train_loss=train_losses, dev_loss=dev_losses, train_accuracy=train_accuracy,
        dev_accuracy=dev_accuracy, epochs_to_target=reached[0] if reached else None,
        ms_per_step=float(np.median(epoch_ms[1:] if len(epoch_ms) > 1 else epoch_ms)),
    )


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
            f"{r.dev_accuracy:.3f} | {reached} | {r.ms_per_step:.2f} |"
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
    """Training (solid) and dev (dashed) loss per epoch of every run, one PNG."""
    plt = plotting.pyplot()
    figure, axes = plt.subplots(figsize=(8, 5))
    for r in results:
        epochs = np.arange(1, len(r.train_loss) + 1)
        (line,) = axes.plot(epochs, r.train_loss, label=r.name)
        axes.plot(epochs, r.dev_loss, linestyle="--", color=line.get_color())
    axes.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log",
             title="train (solid) and dev (dashed) loss")
    axes.legend()
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


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
    axes.legend()
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def run(config, output_dir):
    """The whole comparison: trains, writes TensorBoard runs and both PNGs under ``output_dir``.

    Writes ``output_dir/tensorboard/<optimizer>/``, ``output_dir/loss_curves.png`` and
    ``output_dir/bowl_paths.png``; returns the report (markdown tables) as text.
    """
    os.makedirs(output_dir, exist_ok=True)
    config = dataclasses.replace(config, logdir=os.path.join(output_dir, "tensorboard"))
    results = compare(config)
    plot_loss_curves(results, os.path.join(output_dir, "loss_curves.png"))
    paths = bowl_paths()
    plot_bowl_paths(paths, os.path.join(output_dir, "bowl_paths.png"))
    bowl = ["| optimizer | zig-zags across the narrow axis | distance to minimum after 40 steps |",
            "| --- | --- | --- |"]
    bowl += [f"| {name} | {narrow_axis_crossings(p)} | {np.linalg.norm(p[-1]):.3g} |" for name, p in paths.items()]
    return format_table(results, config.target_loss) + "\n\n" + "\n".join(bowl)
