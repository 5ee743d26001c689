"""A user's model and data: a CNN against Keras, a streamed split against one in memory, and
memory that does not grow with the data (issue 28, "Your model, your data").

Three benchmarks:

- **cnn**: the CNN ``--model=cnn --conv_filters=32,64 --batch_norm`` on mnist_t10k, b = 64:
  examples per second of a real Trainer's loop (``benchmarks.training``'s tfnet contender, at
  ``--jit_compile=auto``, which does not compile convolutions) against Keras ``fit`` on the same
  network and optimiser (``tfnet.build``) at ``steps_per_execution`` 100 with
  ``jit_compile=True`` asked explicitly and, beside it, ``False``; alternating rounds. Then a
  whole 10-epoch run (``scripts/train.py``, one process) and its test accuracy.
- **streaming**: the mnist_t10k MLP 784-256-128-10 at b = 64 (the training split copied once to
  a file, ``tfnet.data.files``, and read by position as training goes, ``--memory_budget_mb``
  below its size) against the same run with the split in memory, both with XLA on as ``auto``
  picks it for a long run; examples per second of each Trainer's loop, alternating rounds.
- **memory**: ``.npz`` files of random 32×32×3 images (``x_train``, ``y_train``) of about 100 MB
  and of ``memory_gb`` GB, generated chunk by chunk, each trained on by ``scripts/train.py`` in a
  process of its own (``--memory_budget_mb=256``, one epoch at b = 256: the small file is held
  in memory, the big one streamed), whose peak resident memory is read from ``wait4``.

Goals (issue 28): the CNN ≥ 98 % test accuracy within 10 epochs and ≥ 1.2× Keras fit at its best
settings (``steps_per_execution`` 100, ``jit_compile=True``); streaming ≥ 0.8× in memory; the big
file's peak within 200 MB of the small one's and under 1,500 MB.
"""

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

from benchmarks import harness, runs, training
from tfnet.config import names_among, positive, positive_int, setting

BENCHMARKS = {
    "cnn": "CNN 32,64 with BatchNorm on mnist_t10k, b=64, against Keras fit; its 10-epoch accuracy",
    "streaming": "mnist_t10k MLP 784-256-128-10, b=64, the training split streamed from a file",
    "memory": "peak memory training on a 100 MB and a multi-GB .npz file",
}
CNN = dict(dataset="mnist_t10k", model="cnn", conv_filters=(32, 64), batch_norm=True,
           batch_size=64)
MLP = dict(dataset="mnist_t10k", hidden_units=(256, 128), batch_size=64)
KERAS_XLA = training.keras_name(100, True)


@dataclasses.dataclass(frozen=True)
class YourDataBenchConfig:
    """What to time; each field is a flag of ``scripts/bench_your_data.py``."""

    benchmarks: tuple = setting(
        tuple(BENCHMARKS),
        "Benchmarks to run: " + "; ".join(f"{k}: {d}" for k, d in BENCHMARKS.items()),
        names_among(*BENCHMARKS))
    rounds: int = setting(3, "Timed rounds (alternating the contenders' order).", positive_int)
    seconds_per_round: float = setting(
        2.0, "About how long each contender works per round, in seconds.", positive)
    data_dir: str = setting(
        None, "TFDS data directory holding mnist_t10k (cnn and streaming are skipped, with a "
        "line, when it is not there). Nothing is downloaded.")
    cnn_epochs: int = setting(10, "Epochs of the CNN's whole run, whose test accuracy is kept.",
                              positive_int)
    memory_gb: float = setting(2.0, "Size of the big .npz file, in GB.", positive)
    small_memory_gb: float = setting(0.1, "Size of the small .npz file, in GB.", positive)
    optimizer: str = setting("adam", "Optimiser of every contender.")
    learning_rate: float = setting(0.001, "Learning rate of every contender.", positive)


# A run small enough for a test: every contender, one short round, tiny files.
QUICK = dict(rounds=1, seconds_per_round=0.01, cnn_epochs=1, memory_gb=0.01,
             small_memory_gb=0.002)


def _cnn(config, say):
    with tempfile.TemporaryDirectory() as run_dir:
        trainer, ours = training._tfnet(config, CNN, os.path.join(run_dir, "run"), "auto")
        contenders = [ours] + [training._keras_fit(config, trainer, 100, xla) for xla in (True, False)]
        say(f"cnn: {config.rounds} rounds ...")
        timings = harness.measure(contenders, config.rounds, warmup_rounds=0)
    name = BENCHMARKS["cnn"].split(";")[0]
    results = [harness.result(name, timings, ours.name, KERAS_XLA, "example", 1.2),
               harness.result(name, timings, ours.name, training.keras_name(100, False), "example")]
    say(f"cnn: a whole {config.cnn_epochs}-epoch run ...")
    accuracy = _test_accuracy(config)
    results.append(harness.Figure(name, f"test accuracy after {config.cnn_epochs} epochs",
                                  100 * accuracy, "%", 98.0 if config.cnn_epochs <= 10 else None))
    return results


def _test_accuracy(config):
    """The CNN's test accuracy after a whole ``scripts/train.py`` run of ``cnn_epochs``."""
    with tempfile.TemporaryDirectory(prefix="tfnet-bench-") as tmp:
        flags = [f"--{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
                 for k, v in CNN.items() if not isinstance(v, bool)]
        runs._run_checked([sys.executable, "scripts/train.py", *flags, "--batch_norm",
                           f"--data_dir={config.data_dir}", f"--epochs={config.cnn_epochs}",
                           f"--model_dir={tmp}/run", "--noexport"])
        with open(os.path.join(tmp, "run", "results.json")) as f:
            return json.load(f)["test_accuracy"]


def _streaming(config, say):
    from tfnet import config as config_lib
    from tfnet import data as data_lib
    from tfnet import training as training_lib

    splits = data_lib.load("mnist_t10k", config.data_dir)
    contenders = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, budget in (("in memory", 0.0), ("streamed from a file", 1.0)):
            train_config = config_lib.TrainConfig(
                **MLP, data_dir=config.data_dir, optimizer=config.optimizer,
                learning_rate=config.learning_rate, jit_compile="on", export=False,
                model_dir=os.path.join(tmp, name.replace(" ", "_")), memory_budget_mb=budget,
                cache_dir=os.path.join(tmp, "cache"))
            trainer = training_lib.Trainer(train_config, data=splits, verbose=0)
            say(f"streaming: {trainer.data.summary}")
            contenders.append(_loop_contender(f"tfnet, train {name}", trainer, config))
        say(f"streaming: {config.rounds} rounds ...")
        timings = harness.measure(contenders, config.rounds, warmup_rounds=0)
    description = BENCHMARKS["streaming"]
    return [harness.result(description, timings, contenders[1].name, contenders[0].name,
                           "example", 0.8)]


def _loop_contender(name, trainer, config):
    """Whole epochs of ``trainer``'s loop per round (the first call traces and compiles)."""
    loop = trainer.loop

    def epochs(count):
        steps = count * loop.steps_per_epoch
        while steps:
            steps -= loop(min(steps, loop.max_steps_per_call)).steps

    epochs(1)
    per_epoch = harness.timed(lambda: epochs(1), 1)
    count = training._epochs_for(per_epoch, config.seconds_per_round)
    return harness.Contender(name, lambda: harness.timed(lambda: epochs(count),
                                                         count * loop.num_examples))


def write_npz(path, gigabytes, seed=0, chunk=4096):
    """A ``.npz`` of ``x_train`` (random uint8 32×32×3 images as float32, about ``gigabytes``
    GB) and ``y_train`` (10 classes), stored uncompressed and written chunk by chunk, so its
    size is not bounded by this process's memory."""
    shape = (32, 32, 3)
    rows = max(64, int(gigabytes * 2**30 / (4 * np.prod(shape))))
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        with archive.open("x_train.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_2_0(
                f, {"descr": "<f4", "fortran_order": False, "shape": (rows, *shape)})
            for start in range(0, rows, chunk):
                count = min(chunk, rows - start)
                f.write(rng.integers(0, 256, (count, *shape)).astype(np.float32).tobytes())
        with archive.open("y_train.npy", "w") as f:
            np.lib.format.write_array(f, rng.integers(0, 10, rows))
    return rows


def peak_memory_mb(dataset, tmp):
    """The peak resident memory (MB) of ``scripts/train.py`` training one epoch on ``dataset``
    (``--memory_budget_mb=256``), in a process of its own.

    Read from the process's ``VmHWM`` (its resident high-water mark since it started the
    interpreter: ``ru_maxrss`` would also count the pages of this process it was forked from),
    polled every 20 ms until it exits; a high-water mark only grows, so the last reading is the
    peak up to the last 20 ms of the process, which frees memory rather than takes it.
    """
    command = [sys.executable, "scripts/train.py", f"--dataset={dataset}", "--epochs=1",
               "--batch_size=256", "--hidden_units=64", "--memory_budget_mb=256", "--noexport",
               f"--model_dir={tmp}/run-{os.path.basename(dataset)}", f"--cache_dir={tmp}/cache"]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, cwd=runs.REPO_ROOT, env=runs.subprocess_env(),
                                   stdout=subprocess.DEVNULL, stderr=errors)
        peak = 0
        while process.poll() is None:
            peak = max(peak, _high_water_kb(process.pid))
            time.sleep(0.02)
        if process.returncode:
            errors.seek(0)
            raise subprocess.CalledProcessError(process.returncode, command,
                                                stderr=errors.read()[-4000:].decode())
    return peak / 1024


def _high_water_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):  # exited meanwhile
        return 0


def _memory(config, say):
    description = BENCHMARKS["memory"]
    with tempfile.TemporaryDirectory(prefix="tfnet-bench-") as tmp:
        peaks = {}
        for name, gigabytes in (("small", config.small_memory_gb), ("big", config.memory_gb)):
            path = os.path.join(tmp, f"{name}.npz")
            rows = write_npz(path, gigabytes)
            size = os.path.getsize(path) / 2**20
            say(f"memory: {name}.npz, {rows:,} images, {size:,.0f} MB: training ...")
            peaks[name] = (size, peak_memory_mb(path, tmp))
    (small_size, small), (big_size, big) = peaks["small"], peaks["big"]
    return [
        harness.Figure(description, f"peak, {small_size:,.0f} MB file", small, "MB"),
        harness.Figure(description, f"peak, {big_size:,.0f} MB file", big, "MB", 1500.0, True),
        harness.Figure(description, "growth of the peak with the file", big - small, "MB", 200.0,
                       True),
    ]


def run(config, say=print):
    """Runs the benchmarks ``config`` names; returns their ``harness.Result``s and ``Figure``s."""
    results = []
    for name in config.benchmarks:
        if name in ("cnn", "streaming") and not _mnist_available(config):
            say(f"skipped {name}: mnist_t10k is not prepared in --data_dir={config.data_dir}")
            continue
        results += {"cnn": _cnn, "streaming": _streaming, "memory": _memory}[name](config, say)
    return results


def _mnist_available(config):
    from tfnet import data as data_lib

    try:
        data_lib.check_available("mnist_t10k", config.data_dir)
        return True
    except data_lib.DatasetNotFoundError:
        return False
