"""Shared test helpers: running the scripts in a subprocess and reading TensorBoard events."""

import os
import subprocess
import sys

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


def runs_trial(pid, model_dir):
    """Whether process ``pid`` is alive and running with ``--model_dir=<model_dir>`` (Linux)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f"--model_dir={model_dir}".encode() in f.read().split(b"\0")
    except OSError:
        return False
