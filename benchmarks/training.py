"""Training throughput: tfnet's compiled loop against Keras' ``fit``, JAX, numpy and the matmul peak.

On each problem, in one process and alternating rounds (``benchmarks.harness``), examples per
second in steady state of:

- **tfnet**: the loop of a real ``tfnet.training.Trainer`` (its one train step, its XLA setting,
  ``--jit_compile``, on by default), a whole number of epochs per round; and the same with
  ``jit_compile=off`` (``also_without_xla``);
- **Keras fit**: the same architecture (``tfnet.build.model``) and optimiser
  (``tfnet.optimizers``), ``model.fit`` on the same training split, timed per epoch by a callback
  after each call's first epoch, with ``steps_per_execution`` 1 and 100 and ``jit_compile=False``,
  and with ``steps_per_execution`` 100 and ``jit_compile=True`` asked explicitly (Keras'
  ``"auto"`` turns XLA off on a machine without a GPU); "Keras fit, best setting" is, in each
  round, the fastest of the three;
- **JAX + Optax**: the same network, data, initial scale and Adam, one ``jax.jit`` of a
  ``lax.scan`` over each epoch's mini-batches (``benchmarks.jax_mlp``; skipped, with a line, when
  JAX or Optax is not installed: ``pip install -e .[bench]``);
- **numpy**: the course's equations written out for this benchmark (``NumpyMLP``): forward and
  backward pass of the ReLU MLP, softmax cross-entropy, Adam with bias correction, mini-batches
  of a fresh permutation each epoch, in float32 on inputs normalised once beforehand;
- **its matmuls alone**: the matrix products of the network's training steps and nothing else
  (``matmuls_alone``, XLA), the bound of any training step of this network at this batch size;
- **matmul peak**: the float32 matrix-multiply rate of this machine (``matmul_seconds_per_flop``,
  1024 × 1024 products, measured each round), as seconds per example had every FLOP of a training
  step (``flops_per_example``) run at that rate; a speed-up against it is a share of the peak.

Goals: on the course net and the moons MLP, tfnet ≥ 3× numpy (issue "The training engine"); on
the mnist_t10k MLP at batch 64, each at its best setting, tfnet ≥ 2.5× Keras fit and ≥ 1.0× the
JAX + Optax loop (issue 26, "Speed a user feels"), and ≥ 60 % of the matmul peak (issue "The
training engine").
"""

import dataclasses
import functools
import os
import tempfile
import time

import numpy as np

from benchmarks import harness
from tfnet.config import choice, names_among, positive, positive_int, setting

# name -> (description, TrainConfig fields).
PROBLEMS = {
    "course": ("course net 2-5-2-2, moons 300 points, b=64",
               dict(dataset="moons", num_examples=375, hidden_units=(5, 2), batch_size=64)),
    "moons": ("moons 2-64-32-2, 800 points, b=64",
              dict(dataset="moons", hidden_units=(64, 32), batch_size=64)),
    "mnist_b64": ("mnist_t10k 784-256-128-10, 6,400 images, b=64",
                  dict(dataset="mnist_t10k", hidden_units=(256, 128), batch_size=64)),
    "mnist_b256": ("mnist_t10k 784-256-128-10, 6,400 images, b=256",
                   dict(dataset="mnist_t10k", hidden_units=(256, 128), batch_size=256)),
}
KERAS_BEST = "Keras fit, best setting"
JAX = "JAX + Optax, lax.scan per epoch"
# Problem -> {anchor: least speed-up of tfnet at its --jit_compile}.
GOALS = {
    "course": {"numpy": 3.0}, "moons": {"numpy": 3.0},
    "mnist_b64": {KERAS_BEST: 2.5, JAX: 1.0, "matmul peak": 0.6},
}
# Keras fit's settings: (steps_per_execution, jit_compile).
KERAS_SETTINGS = ((1, False), (100, False), (100, True))


@dataclasses.dataclass(frozen=True)
class TrainingBenchConfig:
    """What to time; each field is a flag of ``scripts/bench_training.py``."""

    problems: tuple = setting(
        tuple(PROBLEMS), "Problems to time: " + "; ".join(f"{k}: {d}" for k, (d, _) in PROBLEMS.items()),
        names_among(*PROBLEMS),
    )
    rounds: int = setting(5, "Timed rounds (alternating the contenders' order).", positive_int)
    seconds_per_round: float = setting(
        0.5, "About how long each contender works per round, in seconds.", positive)
    data_dir: str = setting(
        None, "TFDS data directory holding mnist_t10k (its problems are skipped, with a line, "
        "when it is not there). Nothing is downloaded.")
    optimizer: str = setting("adam", "Optimiser of every contender (tfnet.optimizers.NAMES).")
    learning_rate: float = setting(0.001, "Learning rate of every contender.", positive)
    jit_compile: str = setting("on", "tfnet's --jit_compile: on (what auto picks for long runs, "
                               "whose speed this measures), auto or off.", choice("auto", "on", "off"))
    also_without_xla: bool = setting(
        True, "Also time tfnet with --jit_compile=off (against Keras fit's best and JAX).")
    include_jax: bool = setting(
        True, "Time the JAX + Optax loop (skipped, with a line, when JAX or Optax is missing).")


# A run small enough for a test: every contender, one short round, on the course net.
QUICK = dict(problems=("course",), rounds=1, seconds_per_round=0.01)


def flops_per_example(layer_sizes):
    """FLOPs of one training step per example of an MLP ``n_0 → n_1 → … → n_L`` (matmuls only).

    Each layer costs 2·n_in·n_out forward, as much for its weight gradient, and as much again
    for the gradient of its input, which the first layer does not need.
    """
    products = [a * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:])]
    return 4 * sum(products) + 2 * sum(products[1:])


def matmul_seconds_per_flop(size=1024, repeats=8):
    """Seconds per FLOP of float32 ``size × size`` matrix products on this machine, now."""
    products, a = _matmul_chain(size, repeats)
    products(a).numpy()  # warm caches
    seconds = harness.timed(lambda: products(a).numpy(), repeats)
    return seconds / (2.0 * size**3)


@functools.lru_cache(maxsize=None)
def _matmul_chain(size, repeats):
    """A compiled chain of ``repeats`` products by one ``size × size`` matrix, and the matrix
    (built once per process: every round times the same function)."""
    import tensorflow as tf

    # Scaled by 1/√size so that a chain of products keeps its magnitude; a chain, because
    # repeated identical products would be computed once (common subexpression elimination).
    a = tf.random.stateless_normal([size, size], seed=[0, 0]) / size**0.5

    @tf.function
    def products(a):
        x = a
        for _ in range(repeats):
            x = tf.matmul(x, a)
        return x

    return products, a


def matmuls_alone(layer_sizes, batch_size, repeats=200):
    """Seconds per example of the matrix products of the MLP's training steps and nothing else.

    Each step multiplies a batch forward through the layers, forms every weight gradient and
    every input gradient but the first layer's (``flops_per_example``'s products), in float32,
    compiled by XLA; the weights move by a tiny step each time, so nothing can be computed once
    for all steps. It bounds what any training step of this network can reach here: the shapes
    of its matrices, not the machine's peak, limit it at small batches.
    """
    steps, weights = _matmul_steps(tuple(layer_sizes), batch_size, repeats)
    steps(weights).numpy()  # warm caches
    return harness.timed(lambda: steps(weights).numpy(), repeats * batch_size)


@functools.lru_cache(maxsize=None)
def _matmul_steps(layer_sizes, batch_size, repeats):
    """``matmuls_alone``'s compiled loop and its weights, built once per process."""
    import tensorflow as tf

    weights = [tf.random.stateless_normal([n, k], seed=[0, i]) * 0.01
               for i, (n, k) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:]))]
    x = tf.random.stateless_normal([batch_size, layer_sizes[0]], seed=[1, 0])

    @tf.function(jit_compile=True)
    def steps(weights):
        def body(i, *weights):
            activations = [x]
            for w in weights:
                activations.append(tf.matmul(activations[-1], w))
            gradient, moved = activations[-1], list(weights)
            for layer in range(len(weights) - 1, -1, -1):
                moved[layer] = weights[layer] - 1e-9 * tf.matmul(activations[layer], gradient,
                                                                transpose_a=True)
                if layer:
                    gradient = tf.matmul(gradient, weights[layer], transpose_b=True)
            return (i + 1, *moved)

        return tf.while_loop(lambda i, *w: i < repeats, body, (0, *weights))[1]

    return steps, weights


class NumpyMLP:
    """The course's mini-batch Adam on a ReLU MLP with a softmax output, in numpy.

    Forward ``a[l] = relu(a[l−1] W[l] + b[l])``, ``z = a[L−1] W[L] + b[L]``, the mini-batch cost
    ``J = −(1/m) Σ log softmax(z)_y``; backward from ``dz = (softmax(z) − y) / m``; Adam with
    ``v, s`` bias-corrected and ε outside the root. In ``dtype``: float32 (the steady-state
    contender) or float64 (as the course writes it).
    """

    def __init__(self, layer_sizes, batch_size, learning_rate, seed=0, beta1=0.9, beta2=0.999,
                 epsilon=1e-8, dtype=np.float32):
        rng = np.random.default_rng(seed)
        self.dtype = np.dtype(dtype)
        self.weights = [(rng.standard_normal((n, k)) * np.sqrt(2.0 / n)).astype(dtype)
                        for n, k in zip(layer_sizes[:-1], layer_sizes[1:])]
        self.biases = [np.zeros(k, dtype) for k in layer_sizes[1:]]
        params = self.weights + self.biases
        self.v = [np.zeros_like(p) for p in params]
        self.s = [np.zeros_like(p) for p in params]
        self.t, self.rng = 0, rng
        self.batch_size, self.alpha = batch_size, learning_rate
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def step(self, x, y):
        """One Adam step on the mini-batch ``(x, y)``; returns its cost J (before the step)."""
        activations = [x]
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            activations.append(np.maximum(activations[-1] @ w + b, 0.0))
        z = activations[-1] @ self.weights[-1] + self.biases[-1]
        z -= z.max(axis=1, keepdims=True)
        dz = np.exp(z)
        total = dz.sum(axis=1, keepdims=True)
        rows = np.arange(len(y))
        cost = float(np.mean(np.log(total[:, 0]) - z[rows, y]))
        dz /= total
        dz[rows, y] -= 1.0
        dz /= len(y)
        weight_gradients, bias_gradients = [], []
        for layer in range(len(self.weights) - 1, -1, -1):
            weight_gradients.insert(0, activations[layer].T @ dz)
            bias_gradients.insert(0, dz.sum(axis=0))
            if layer:
                dz = (dz @ self.weights[layer].T) * (activations[layer] > 0)
        self.t += 1
        alpha_t = self.alpha / (1 - self.beta1**self.t)
        root_correction = 1 - self.beta2**self.t
        for p, g, v, s in zip(self.weights + self.biases, weight_gradients + bias_gradients,
                              self.v, self.s):
            v *= self.beta1
            v += (1 - self.beta1) * g
            s *= self.beta2
            s += (1 - self.beta2) * g * g
            p -= alpha_t * v / (np.sqrt(s / root_correction) + self.epsilon)
        return cost

    def predict(self, x):
        """The predicted class of each row of ``x``: ``argmax z``."""
        a = x
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            a = np.maximum(a @ w + b, 0.0)
        return np.argmax(a @ self.weights[-1] + self.biases[-1], axis=1)

    def epoch(self, x, y):
        """One epoch over a fresh permutation; returns the mean of its mini-batch costs,
        weighted by their sizes (the course's epoch cost)."""
        order = self.rng.permutation(len(y))
        total = 0.0
        for start in range(0, len(y), self.batch_size):
            batch = order[start:start + self.batch_size]
            total += self.step(x[batch], y[batch]) * len(batch)
        return total / len(y)


def _epochs_for(seconds_per_epoch, target, least=1):
    return max(least, int(round(target / max(seconds_per_epoch, 1e-9))))


def _tfnet(config, problem, run_dir, jit_compile):
    """tfnet's contender: whole epochs of a real Trainer's loop per round."""
    from tfnet import config as config_lib
    from tfnet import training

    train_config = config_lib.TrainConfig(
        **problem, data_dir=config.data_dir, optimizer=config.optimizer,
        learning_rate=config.learning_rate, jit_compile=jit_compile, model_dir=run_dir,
        export=False,
    )
    trainer = training.Trainer(train_config, verbose=0)
    loop, examples = trainer.loop, trainer.loop.num_examples

    def epochs(count):
        steps = count * loop.steps_per_epoch
        while steps:
            steps -= loop(min(steps, loop.max_steps_per_call)).steps

    epochs(1)  # trace and compile
    per_epoch = harness.timed(lambda: epochs(1), 1)
    count = _epochs_for(per_epoch, config.seconds_per_round)
    return trainer, harness.Contender(f"tfnet, jit_compile={jit_compile}",
                                      lambda: harness.timed(lambda: epochs(count), count * examples))


def _keras_fit(config, trainer, steps_per_execution, jit_compile):
    """Keras fit's contender: the same architecture and optimiser, timed per epoch."""
    import keras

    from tfnet import build

    features, labels = (t.numpy() for t in trainer.data.splits["train"])
    model = build.model(trainer.config, trainer.info)  # the same path as the trainer's
    model.compile(optimizer=build.optimizer(trainer.config, trainer.steps_per_epoch),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=steps_per_execution, jit_compile=jit_compile)

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

    timer = EpochTimes()

    def seconds_per_example(count):
        timer.seconds = []
        model.fit(features, labels, batch_size=trainer.config.batch_size, epochs=count + 1,
                  shuffle=True, verbose=0, callbacks=[timer])
        return sum(timer.seconds[1:]) / (count * len(labels))  # the first epoch sets fit up

    per_epoch = seconds_per_example(1) * len(labels)
    count = _epochs_for(per_epoch, config.seconds_per_round)
    return harness.Contender(keras_name(steps_per_execution, jit_compile),
                             lambda: seconds_per_example(count))


def keras_name(steps_per_execution, jit_compile):
    """The name of Keras fit's contender with these settings."""
    return f"Keras fit, steps_per_execution={steps_per_execution}, jit_compile={jit_compile}"


def _jax(config, trainer, layer_sizes):
    """The JAX + Optax contender (``benchmarks.jax_mlp``): the same data, statistics and Adam."""
    from benchmarks import jax_mlp

    features, labels = (t.numpy() for t in trainer.data.splits["train"])
    normalize = trainer.model.get_layer("normalize")
    mlp = jax_mlp.JaxMLP(features, labels, layer_sizes, np.asarray(normalize.mean).ravel(),
                         np.asarray(normalize.variance).ravel(), trainer.config.batch_size,
                         config.learning_rate)
    mlp.epochs(1)  # trace and compile
    per_epoch = harness.timed(lambda: mlp.epochs(1), 1)
    count = _epochs_for(per_epoch, config.seconds_per_round)
    return harness.Contender(JAX, lambda: harness.timed(lambda: mlp.epochs(count),
                                                        count * len(labels)))


def _numpy(config, trainer, layer_sizes):
    features, labels = (t.numpy() for t in trainer.data.splits["train"])
    x = features.reshape(len(labels), -1).astype(np.float32)
    x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-3)
    mlp = NumpyMLP(layer_sizes, trainer.config.batch_size, config.learning_rate)
    per_epoch = harness.timed(lambda: mlp.epoch(x, labels), 1)
    count = _epochs_for(per_epoch, config.seconds_per_round)

    def run():
        return harness.timed(lambda: [mlp.epoch(x, labels) for _ in range(count)], count * len(labels))

    return harness.Contender("numpy", run)


def _available(config, name, say):
    from tfnet import data as data_lib

    if PROBLEMS[name][1]["dataset"] in data_lib.EMBEDDED_DATASETS:
        return True
    try:
        data_lib.check_available("mnist_t10k", config.data_dir)
    except data_lib.DatasetNotFoundError:
        say(f"skipped {name}: mnist_t10k is not prepared in --data_dir={config.data_dir}")
        return False
    return True


def _jax_available(config, say):
    from benchmarks import jax_mlp

    if not config.include_jax:
        return False
    if not jax_mlp.available():
        say("skipped the JAX + Optax contender: JAX or Optax is not installed "
            "(pip install -e .[bench])")
        return False
    return True


def run(config, say=print):
    """Times every problem of ``config``; returns its ``harness.Result``s (tfnet against each)."""
    results = []
    with_jax = _jax_available(config, say)
    for name in config.problems:
        if not _available(config, name, say):
            continue
        description, problem = PROBLEMS[name]
        say(f"{description}: preparing the contenders ...")
        with tempfile.TemporaryDirectory() as run_dir:
            trainer, tfnet_contender = _tfnet(config, problem, os.path.join(run_dir, "run"),
                                              config.jit_compile)
            layer_sizes = [int(np.prod(trainer.model.inputs[0].shape[1:])), *problem["hidden_units"],
                           int(trainer.model.outputs[0].shape[-1])]
            flops = flops_per_example(layer_sizes)
            contenders = [tfnet_contender]
            if config.also_without_xla and config.jit_compile != "off":
                contenders.append(_tfnet(config, problem, os.path.join(run_dir, "off"), "off")[1])
            contenders += [_keras_fit(config, trainer, *setting) for setting in KERAS_SETTINGS]
            if with_jax:
                contenders.append(_jax(config, trainer, layer_sizes))
            contenders += [
                _numpy(config, trainer, layer_sizes),
                harness.Contender("its matmuls alone", lambda: matmuls_alone(
                    layer_sizes, trainer.config.batch_size)),
                harness.Contender("matmul peak", lambda: matmul_seconds_per_flop() * flops),
            ]
            say(f"{description}: {config.rounds} rounds ...")
            timings = harness.measure(contenders, config.rounds, warmup_rounds=0)
        keras_names = [keras_name(*setting) for setting in KERAS_SETTINGS]
        timings[KERAS_BEST] = [min(times) for times in zip(*(timings[k] for k in keras_names))]
        goals = GOALS.get(name, {})
        ours, *others = [c.name for c in contenders if c.name.startswith("tfnet")]
        anchors = [*keras_names, KERAS_BEST, *([JAX] if with_jax else []), "numpy",
                   "its matmuls alone", "matmul peak"]
        for anchor in anchors:
            results.append(harness.result(description, timings, ours, anchor, "example",
                                          goals.get(anchor)))
        for other in others:  # tfnet without XLA against the best of the others
            for anchor in [KERAS_BEST, *([JAX] if with_jax else [])]:
                results.append(harness.result(description, timings, other, anchor, "example"))
        # The bound: the share of the peak that this network's products reach by themselves.
        results.append(harness.result(description, timings, "its matmuls alone", "matmul peak",
                                      "example"))
    return results
