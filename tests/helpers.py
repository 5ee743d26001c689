"""Shared test helpers: running the scripts in a subprocess (or many, forked from one that
imported TensorFlow once), killing them at chosen moments, reading their checkpoints, TensorBoard
events and error lines, and writing prepared TFDS datasets."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script_env(tf_cpp_min_log_level="2"):
    """The scripts' environment: the repo importable, unbuffered output, no TF_CONFIG.

    ``tf_cpp_min_log_level=None`` leaves TF_CPP_MIN_LOG_LEVEL unset, as in a user's shell (this
    test session sets it in ``os.environ``, see conftest.py).
    """
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, PYTHONUNBUFFERED="1")
    env.pop("TF_CONFIG", None)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    if tf_cpp_min_log_level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = tf_cpp_min_log_level
    return env


def script_command(script, *args):
    return [sys.executable, os.path.join(REPO_ROOT, "scripts", script), *args]


def run_script(script, *args, cwd=None, timeout=300, check=True, env=None):
    """Runs scripts/<script> with ``args`` in a fresh process (environment ``env``, by default
    ``script_env()``); returns the CompletedProcess."""
    completed = subprocess.run(
        script_command(script, *args), cwd=cwd, env=env or script_env(), capture_output=True,
        text=True, timeout=timeout,
    )
    if check and completed.returncode != 0:
        raise AssertionError(
            f"{script} exited {completed.returncode}\nstdout:\n{completed.stdout[-4000:]}\n"
            f"stderr:\n{completed.stderr[-4000:]}"
        )
    return completed


# Runs steps one after the other, each in a process of its own forked from this one, which has
# imported TensorFlow, Keras, TFDS and matplotlib once (what every step would otherwise pay
# again); stops at the first step whose exit status is not allowed. Nothing here starts
# TensorFlow's runtime, so each child initialises its own, as a fresh `python` would.
_FORKING_RUNNER = """
import json, os, runpy, sys
from tfnet import flags
flags.import_tensorflow_quietly()
import keras, matplotlib, tensorflow, tensorflow_datasets  # noqa: F401
matplotlib.use("Agg")
steps = json.load(open(sys.argv[1]))
for i, step in enumerate(steps):
    out = os.path.join(sys.argv[2], str(i))
    pid = os.fork()
    if pid == 0:
        with open(out + ".out", "w") as stdout, open(out + ".err", "w") as stderr:
            os.dup2(stdout.fileno(), 1)
            os.dup2(stderr.fileno(), 2)
        code = 0
        try:
            if "source" in step:
                sys.argv = ["-c"]
                exec(compile(step["source"], "<step>", "exec"), {"__name__": "__main__"})
            else:
                sys.argv = step["argv"]
                runpy.run_path(sys.argv[0], run_name="__main__")
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    with open(out + ".status", "w") as f:
        f.write(str(code))
    if "allowed" in step and code not in step["allowed"]:
        break
"""


def run_forked(steps, cwd, out_dir, env=None, timeout=900):
    """Runs ``steps`` in order, each as a fresh ``python`` would run it, in ``cwd``.

    Each step is a dict: ``argv`` (a script's path, relative to ``cwd`` or absolute, and its
    arguments: ``python <argv>``) or ``source`` (``python -c <source>``), and optionally
    ``allowed``, the exit statuses after which the next step runs (a step after one that exited
    otherwise never runs; without it, the next always does). Returns, for each step that ran,
    (exit status, stdout, stderr).
    """
    os.makedirs(out_dir, exist_ok=True)
    plan = os.path.join(out_dir, "steps.json")
    with open(plan, "w") as f:
        json.dump(steps, f)
    subprocess.run([sys.executable, "-c", _FORKING_RUNNER, plan, out_dir], cwd=cwd,
                   env=env or script_env(), check=True, timeout=timeout)
    ran = []
    for i in range(len(steps)):
        path = os.path.join(out_dir, str(i))
        if not os.path.exists(path + ".status"):
            break
        with open(path + ".status") as status, open(path + ".out") as out, open(path + ".err") as err:
            ran.append((int(status.read()), out.read(), err.read()))
    return ran


def read_scalars(log_dir):
    """{tag: [(step, value), ...]} from the event files in ``log_dir`` (TF2 writes tensors)."""
    scalars = {}
    for name in sorted(os.listdir(log_dir)):
        if not name.startswith("events.out.tfevents"):
            continue
        for event in tf.compat.v1.train.summary_iterator(os.path.join(log_dir, name)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != "scalars":
                    continue
                number = float(tf.make_ndarray(value.tensor))
                scalars.setdefault(value.tag, []).append((event.step, number))
    return scalars


def plugin_tags(log_dir, plugin):
    """The tags written by ``plugin`` (e.g. "hparams", "histograms") in ``log_dir``'s events."""
    tags = set()
    for name in os.listdir(log_dir):
        if name.startswith("events.out.tfevents"):
            for event in tf.compat.v1.train.summary_iterator(os.path.join(log_dir, name)):
                tags.update(v.tag for v in event.summary.value
                            if v.metadata.plugin_data.plugin_name == plugin)
    return tags


def latest_checkpoint_number(model_dir):
    """The number of the latest checkpoint in ``model_dir/checkpoints``'s state file; 0 if none."""
    state = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
    return int(state.model_checkpoint_path.rsplit("-", 1)[1]) if state else 0


def writing_checkpoint(model_dir):
    """Whether a checkpoint is being written (a ``<prefix>_temp`` directory exists)."""
    directory = os.path.join(model_dir, "checkpoints")
    return os.path.isdir(directory) and any("_temp" in n for n in os.listdir(directory))


def final_state(model_dir):
    """Every checkpointed tensor of the latest checkpoint but the wall-clock-bearing history."""
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    return {
        key: reader.get_tensor(key)
        for key in reader.get_variable_to_shape_map()
        # save_counter counts saves (the killed run saved more often); history holds wall times.
        if key != "_CHECKPOINTABLE_OBJECT_GRAPH" and not key.startswith(("history", "save_counter"))
    }


def assert_same_final_state(reference, model_dir):
    """The two runs' latest checkpoints hold bit-identical tensors (weights, BatchNorm averages,
    optimiser slots, seeds, counters)."""
    expected, actual = final_state(reference), final_state(model_dir)
    assert expected.keys() == actual.keys()
    assert any("optimizer" in key for key in expected)  # slot variables are compared too
    for key in expected:
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


def kill_frozen_when(process, trigger, condition, timeout=120):
    """SIGKILLs ``process`` at a moment when ``condition()`` holds.

    ``trigger()`` is polled (cheap); when it holds, the process is frozen (SIGSTOP) so that the
    slower ``condition()`` reads a still picture, then killed, or let go on (SIGCONT).
    """
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline, "the kill point was never reached"
        if trigger():
            process.send_signal(signal.SIGSTOP)
            if condition():
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=60)
                return
            process.send_signal(signal.SIGCONT)
        time.sleep(0.001)


def one_error_line(completed, message):
    """The run exited 1, trained nothing and wrote one line to stderr, "error: <message>...":
    none of TensorFlow's start-up lines (``tfnet.flags.import_tensorflow_quietly``)."""
    assert completed.returncode == 1, completed.stderr
    lines = completed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), completed.stderr
    assert "epoch" not in completed.stdout


def train_config(model_dir, defaults=None, **overrides):
    """The tests' one way to a ``TrainConfig``: a run in ``model_dir`` that writes nowhere else
    (no export unless asked, and then beside it in ``saved_models``), checkpointed by step count
    only (a test must not depend on time), with a test module's ``defaults`` and a test's
    ``overrides`` on top."""
    from tfnet.config import TrainConfig

    values = dict(model_dir=str(model_dir), export=False, checkpoint_every_seconds=0.0,
                  export_dir=os.path.join(os.path.dirname(str(model_dir)), "saved_models"))
    values.update(defaults or {})
    values.update(overrides)
    return TrainConfig(**values)


def write_tfds(data_dir, name, splits, key, feature, num_classes):
    """Writes a prepared TFDS dataset, as ``tfds.builder(name, data_dir=data_dir)`` reads it (its
    files and metadata, version 1.0.0): ``splits`` {split: (x, y)}, the features under ``key``
    as the TFDS feature ``feature`` (e.g. ``tfds.features.Image(shape=(28, 28, 1))``), the
    labels under "label" as ``ClassLabel(num_classes)``; ``(key, "label")`` are its supervised
    keys."""
    import tensorflow_datasets as tfds

    features = tfds.features.FeaturesDict({
        key: feature, "label": tfds.features.ClassLabel(num_classes=num_classes)})
    version_dir = os.path.join(data_dir, name, "1.0.0")
    os.makedirs(version_dir)
    for split, (x, y) in splits.items():
        path = os.path.join(version_dir, f"{name}-{split}.tfrecord-00000-of-00001")
        with tf.io.TFRecordWriter(path) as writer:
            for features_row, label in zip(x, y):
                writer.write(features.serialize_example({key: features_row, "label": label}))
    tfds.folder_dataset.write_metadata(
        data_dir=version_dir, features=features, supervised_keys=(key, "label"),
        split_infos=[tfds.core.SplitInfo(name=split, shard_lengths=[len(y)], num_bytes=0)
                     for split, (_, y) in splits.items()],
    )


def write_mnist_standin(data_dir, num_train=500, num_test=200, seed=0):
    """Writes a stand-in for the offline ``mnist_t10k`` into ``data_dir`` (for a checkout
    without ``../shared``): the real one's name, features (``image``, 28×28×1 uint8) and 10
    classes, ``num_train`` and ``num_test`` examples. Each class is a random 7×7 pattern of
    4×4-pixel blocks, each image its class's pattern at a random brightness plus noise, so a
    small network learns it in an epoch or two."""
    import tensorflow_datasets as tfds

    rng = np.random.default_rng(seed)
    patterns = np.kron(rng.random((10, 7, 7)) < 0.4, np.ones((4, 4)))  # [10, 28, 28]

    def examples(m):
        labels = rng.integers(0, 10, m)
        brightness = rng.uniform(150, 255, (m, 1, 1))
        pixels = patterns[labels] * brightness + rng.normal(0, 30, (m, 28, 28))
        return np.clip(pixels, 0, 255).astype(np.uint8)[..., None], labels

    write_tfds(data_dir, "mnist_t10k", {"train": examples(num_train), "test": examples(num_test)},
               "image", tfds.features.Image(shape=(28, 28, 1)), num_classes=10)
