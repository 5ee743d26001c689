"""Whole runs as a user meets them: start-up, evaluation, logging and checkpoints included.

Three benchmarks (issue 26, "Speed a user feels"), each in alternating rounds
(``benchmarks.harness``):

- **main_job**: ``python scripts/train.py`` (the main job: two moons, every default) as one
  whole process, TensorFlow's import included, from its start to its exit, against a deadline;
  beside it ``python -c "import tensorflow"``, the part of that time no cut in tfnet can reach.
- **mnist_all_in**: a default 15-epoch mnist_t10k MLP run, everything included:
  ``python scripts/train.py --dataset=mnist_t10k --data_dir=… --hidden_units=256,128
  --epochs=15`` as one whole process (loading, every epoch's evaluation, TensorBoard logs,
  checkpoints, the test split, the export) against ``python -m benchmarks.keras_run``: the same
  data loading and network, Keras ``fit`` with its defaults and the dev split as
  ``validation_data`` (and, without a goal, with no validation data). Per trained example
  (epochs · training examples).
- **course_run**: the course net 2-5-2-2 on 300 moons points, b = 64, a whole run with its
  logging — ``tfnet.training.train`` in this process, TensorBoard logs and an evaluation every
  ``course_eval_every_epochs`` epochs (as the course records its cost every 100 epochs),
  XLA as ``course_jit_compile`` says — against the course's float64 numpy implementation
  (``benchmarks.training.NumpyMLP``, float64) run the way the course's ``model()`` runs it: the
  epoch's mean cost recorded every ``course_eval_every_epochs`` epochs, the accuracy of the
  training and test points at the end. Fixed costs (building, tracing, compiling) are cancelled
  by the difference of a long and a short run, done in every round:
  ``seconds per example = (t(long) − t(short)) / ((long − short) · m)``.

The whole-process contenders run in a fresh temporary directory each (their ``--model_dir`` and
``--export_dir``), with this repository first on ``PYTHONPATH``; a process that fails raises
``subprocess.CalledProcessError`` with its last lines of output, so that the benchmark crashes
(exit 1) rather than reports a time.

Goals (issue 26): the main job in ≤ 4 s (a speed-up ≥ 1 against a 4 s deadline); the default
mnist run ≥ 2× Keras fit with its defaults and ``validation_data``; the course run ≥ 3× numpy.
"""

import contextlib
import dataclasses
import io
import os
import subprocess
import sys
import tempfile

import numpy as np

from benchmarks import harness
from tfnet.config import choice, names_among, non_negative_int, positive, positive_int, setting

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

BENCHMARKS = {
    "main_job": "the main job, python scripts/train.py, whole process",
    "mnist_all_in": "default mnist_t10k 784-256-128-10 run, b=64, whole process",
    "course_run": "course net 2-5-2-2, moons 300 points, b=64, whole run with its logging",
}
MAIN_JOB = "python scripts/train.py"
IMPORT_TF = "python -c 'import tensorflow'"
TFNET_RUN = "tfnet, scripts/train.py defaults"
KERAS_VALIDATION = "Keras fit, defaults, validation_data=dev"
KERAS_NO_VALIDATION = "Keras fit, defaults, no validation data"
TFNET_COURSE = "tfnet, whole run"
NUMPY_COURSE = "numpy float64, whole run"
# The course net's problem, as benchmarks.training's "course".
COURSE = dict(dataset="moons", num_examples=375, hidden_units=(5, 2), batch_size=64)


@dataclasses.dataclass(frozen=True)
class RunsBenchConfig:
    """What to time; each field is a flag of ``scripts/bench_runs.py``."""

    benchmarks: tuple = setting(
        tuple(BENCHMARKS),
        "Benchmarks to run: " + "; ".join(f"{k}: {d}" for k, d in BENCHMARKS.items()),
        names_among(*BENCHMARKS))
    rounds: int = setting(3, "Timed rounds (alternating the contenders' order).", positive_int)
    warmup_rounds: int = setting(1, "Untimed rounds first (0 for none).", non_negative_int)
    data_dir: str = setting(
        None, "TFDS data directory holding mnist_t10k (mnist_all_in is skipped, with a line, when "
        "it is not there). Nothing is downloaded.")
    main_job_epochs: int = setting(0, "The main job's --epochs; 0 leaves train.py's default.",
                                   non_negative_int)
    time_import: bool = setting(
        True, "Also time python -c 'import tensorflow', the part of the main job tfnet cannot cut.")
    main_job_seconds: float = setting(4.0, "The main job's goal: at most this many seconds.",
                                      positive)
    mnist_epochs: int = setting(15, "Epochs of the mnist_t10k runs.", positive_int)
    keras_without_validation: bool = setting(
        True, "Also time Keras fit with no validation data (no goal).")
    course_epochs: int = setting(10_000, "Epochs of the course net's long run (the course's "
                                 "10,000).", positive_int)
    course_short_epochs: int = setting(1_000, "Epochs of its short run, whose time is subtracted.",
                                       positive_int)
    course_eval_every_epochs: int = setting(
        100, "The course run's evaluation (tfnet) and recorded cost (numpy) every this many "
        "epochs.", positive_int)
    course_jit_compile: str = setting("on", "tfnet's --jit_compile in the course run.",
                                      choice("auto", "on", "off"))


# A run small enough for a test: one round, a few epochs, every contender with a goal.
QUICK = dict(rounds=1, warmup_rounds=0, main_job_epochs=1, time_import=False, mnist_epochs=1,
             keras_without_validation=False, course_epochs=4, course_short_epochs=2,
             course_eval_every_epochs=2)


def subprocess_env():
    """The environment of a whole-process contender: this one, this repository importable."""
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=REPO_ROOT + (os.pathsep + path if path else ""))


def run_process(args):
    """Runs ``python args…`` from the repository's root in a temporary directory ``{tmp}``
    (``args`` may name it); returns its wall-clock seconds from start to exit. A failing
    process raises ``subprocess.CalledProcessError`` carrying its output's last lines."""
    with tempfile.TemporaryDirectory(prefix="tfnet-bench-") as tmp:
        command = [sys.executable, *(a.format(tmp=tmp) for a in args)]
        seconds = harness.timed(lambda: _run_checked(command), 1)
    return seconds


def _run_checked(command):
    completed = subprocess.run(command, cwd=REPO_ROOT, env=subprocess_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if completed.returncode:
        raise subprocess.CalledProcessError(completed.returncode, command,
                                            stderr=completed.stderr[-4000:])


def process_contender(name, args, units=1):
    """A contender running ``python args…`` (``run_process``) once a round; seconds per unit."""
    return harness.Contender(name, lambda: run_process(args) / units)


def _main_job(config):
    epochs = [f"--epochs={config.main_job_epochs}"] if config.main_job_epochs else []
    deadline = f"{config.main_job_seconds:g} s"
    contenders = [
        process_contender(MAIN_JOB, ["scripts/train.py", "--model_dir={tmp}/run",
                                     "--export_dir={tmp}/export", *epochs]),
        harness.Contender(deadline, lambda: config.main_job_seconds),
    ]
    if config.time_import:
        contenders.append(process_contender(IMPORT_TF, ["-c", "import tensorflow"]))
    timings = harness.measure(contenders, config.rounds, config.warmup_rounds)
    benchmark = BENCHMARKS["main_job"] + ("" if not epochs else f", {epochs[0]}")
    results = [harness.result(benchmark, timings, MAIN_JOB, deadline, "run", 1.0)]
    if config.time_import:
        results.append(harness.result(benchmark, timings, IMPORT_TF, deadline, "run"))
    return results


def _mnist_all_in(config, say):
    from tfnet import data as data_lib

    try:
        data_lib.check_available("mnist_t10k", config.data_dir)
    except data_lib.DatasetNotFoundError:
        say(f"skipped mnist_all_in: mnist_t10k is not prepared in --data_dir={config.data_dir}")
        return []
    data_dir = os.path.abspath(config.data_dir) if config.data_dir else None
    data = [f"--data_dir={data_dir}"] if data_dir else []
    num_train = data_lib.load("mnist_t10k", data_dir).info.num_train
    examples = config.mnist_epochs * num_train
    keras = ["-m", "benchmarks.keras_run", "--dataset=mnist_t10k", *data, "--hidden_units=256,128",
             "--batch_size=64", f"--epochs={config.mnist_epochs}"]
    contenders = [
        process_contender(TFNET_RUN, [
            "scripts/train.py", "--dataset=mnist_t10k", *data, "--hidden_units=256,128",
            f"--epochs={config.mnist_epochs}", "--model_dir={tmp}/run",
            "--export_dir={tmp}/export"], examples),
        process_contender(KERAS_VALIDATION, keras, examples),
    ]
    if config.keras_without_validation:
        contenders.append(process_contender(KERAS_NO_VALIDATION, [*keras, "--novalidation"],
                                            examples))
    timings = harness.measure(contenders, config.rounds, config.warmup_rounds)
    benchmark = BENCHMARKS["mnist_all_in"] + f", {config.mnist_epochs} epochs"
    results = [harness.result(benchmark, timings, TFNET_RUN, KERAS_VALIDATION, "example", 2.0)]
    if config.keras_without_validation:
        results.append(harness.result(benchmark, timings, TFNET_RUN, KERAS_NO_VALIDATION,
                                      "example"))
    return results


def tfnet_course_run(config, epochs, model_dir):
    """A whole ``tfnet.training.train`` run of the course net for ``epochs``; its printed lines
    (one per evaluation, as ``scripts/train.py`` prints them) are written to a string."""
    from tfnet import config as config_lib
    from tfnet import training

    train_config = config_lib.TrainConfig(
        **COURSE, epochs=epochs, eval_every_epochs=config.course_eval_every_epochs,
        jit_compile=config.course_jit_compile, model_dir=model_dir, export=False)
    with contextlib.redirect_stdout(io.StringIO()):
        return training.train(train_config, verbose=2)


def numpy_course_run(layer_sizes, train, test, epochs, record_every, batch_size=64,
                     learning_rate=0.001, seed=0):
    """The course's ``model()`` in float64 numpy: ``epochs`` epochs of mini-batch Adam on
    ``train`` = (x, y), the epoch's mean cost recorded every ``record_every`` epochs, then the
    accuracy on ``train`` and ``test``. Inputs are normalised by the training statistics first.
    Returns ``(costs, train_accuracy, test_accuracy)``."""
    from benchmarks.training import NumpyMLP

    (x, y), (x_test, y_test) = train, test
    mean, std = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-3)
    x, x_test = (x - mean) / std, (x_test - mean) / std
    mlp = NumpyMLP(layer_sizes, batch_size, learning_rate, seed=seed, dtype=np.float64)
    costs = []
    for epoch in range(epochs):
        cost = mlp.epoch(x, y)
        if epoch % record_every == 0:
            costs.append(cost)
    return costs, np.mean(mlp.predict(x) == y), np.mean(mlp.predict(x_test) == y_test)


def _course_run(config):
    from tfnet import data as data_lib

    splits = data_lib.load("moons", num_examples=COURSE["num_examples"])
    train, test = ((e.features.numpy().astype(np.float64), e.labels.numpy())
                   for e in (data_lib.in_memory(splits.train), data_lib.in_memory(splits.test)))
    m = len(train[1])
    layer_sizes = [train[0].shape[1], *COURSE["hidden_units"], splits.info.num_classes]
    long, short = config.course_epochs, config.course_short_epochs

    def tfnet_seconds(epochs):
        with tempfile.TemporaryDirectory(prefix="tfnet-bench-") as tmp:
            return harness.timed(lambda: tfnet_course_run(config, epochs, tmp), 1)

    def numpy_seconds(epochs):
        return harness.timed(lambda: numpy_course_run(
            layer_sizes, train, test, epochs, config.course_eval_every_epochs), 1)

    def difference(seconds):
        return lambda: (seconds(long) - seconds(short)) / ((long - short) * m)

    contenders = [harness.Contender(TFNET_COURSE, difference(tfnet_seconds)),
                  harness.Contender(NUMPY_COURSE, difference(numpy_seconds))]
    timings = harness.measure(contenders, config.rounds, config.warmup_rounds)
    benchmark = (BENCHMARKS["course_run"] + f", {short:,} to {long:,} epochs, "
                 f"jit_compile={config.course_jit_compile}")
    return [harness.result(benchmark, timings, TFNET_COURSE, NUMPY_COURSE, "example", 3.0)]


def run(config, say=print):
    """Runs every benchmark of ``config``; returns their ``harness.Result``s."""
    if config.course_epochs <= config.course_short_epochs:
        raise ValueError(f"course_epochs must be > course_short_epochs "
                         f"({config.course_short_epochs}). "
                         f"Received: course_epochs={config.course_epochs}")
    results = []
    for name in config.benchmarks:
        say(f"{BENCHMARKS[name]}: {config.rounds} rounds ...")
        if name == "main_job":
            results += _main_job(config)
        elif name == "mnist_all_in":
            results += _mnist_all_in(config, say)
        else:
            results += _course_run(config)
    return results
