"""Training that loses nothing: SIGKILL and exact resume, SIGINT, NaN guard, early stopping,
killed exports and unusable paths (issue 6). Every training run is a subprocess of
scripts/train.py, as a user would run it."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import final_state as _final_state
from helpers import kill_frozen_when as _kill_frozen_when
from helpers import latest_checkpoint_number as _latest_number
from helpers import one_error_line as _one_error_line
from helpers import read_scalars, run_script, script_command, script_env
from helpers import writing_checkpoint as _writing_checkpoint
from tfnet import diagnosis, paths
from tfnet.training import export

STEPS_PER_EPOCH = 13  # moons: 800 training examples, batch 64
EPOCHS = 4


def _args(model_dir, optimizer, *extra):
    return [
        f"--optimizer={optimizer}", f"--epochs={EPOCHS}", "--seed=3", "--deterministic",
        "--checkpoint_every_steps=1", "--log_every_steps=2", "--noexport",
        "--hidden_units=32,16", f"--model_dir={model_dir}", *extra,
    ]


def _kill_when(process, condition, timeout=120):
    """SIGKILLs ``process`` as soon as ``condition()`` holds (polled every millisecond)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline, "the kill point was never reached"
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)


@pytest.mark.parametrize("optimizer", ["adam", "keras_adam"])
def test_sigkill_at_several_points_then_resume_is_bit_identical(tmp_path, optimizer):
    reference = tmp_path / "uninterrupted"
    run_script("train.py", *_args(reference, optimizer))

    killed = tmp_path / "killed"
    kill_points = [
        lambda: _latest_number(killed) >= 8,  # mid-epoch 1 (steps 1-13)
        lambda: _writing_checkpoint(killed) and _latest_number(killed) >= 20,  # mid-write, epoch 2
        lambda: _latest_number(killed) >= 2 * STEPS_PER_EPOCH,  # right after an epoch end
    ]
    for condition in kill_points:
        process = subprocess.Popen(
            script_command("train.py", *_args(killed, optimizer)), env=script_env(),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _kill_when(process, condition)
        assert process.returncode == -signal.SIGKILL
    completed = run_script("train.py", *_args(killed, optimizer))
    assert "resumed from" in completed.stdout

    expected, actual = _final_state(reference), _final_state(killed)
    assert expected.keys() == actual.keys()
    assert any("optimizer" in key for key in expected)  # slot variables are compared too
    for key in expected:
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)

    # TensorBoard: every epoch and every logged step exactly once, in order.
    for run_dir in (reference, killed):
        train = read_scalars(run_dir / "train")
        assert [s for s, _ in train["epoch_loss"]] == [STEPS_PER_EPOCH * e for e in range(1, EPOCHS + 1)]
        assert [s for s, _ in train["batch_cost"]] == list(range(2, EPOCHS * STEPS_PER_EPOCH + 1, 2))
        assert len(read_scalars(run_dir / "dev")["epoch_accuracy"]) == EPOCHS
    history = json.loads((killed / "results.json").read_text())["history"]
    assert [r["epoch"] for r in history] == list(range(1, EPOCHS + 1))  # none twice, none skipped


def _batch_cost_steps(model_dir):
    """Steps of the batch_cost events on disk (a record still being written is not read)."""
    steps, train = [], os.path.join(model_dir, "train")
    for name in os.listdir(train) if os.path.isdir(train) else []:
        if "tfevents" not in name or name.startswith("."):
            continue
        try:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(train, name)):
                steps.extend(event.step for v in event.summary.value if v.tag == "batch_cost")
        except tf.errors.DataLossError:
            pass
    return steps


def _logged_past_a_mid_epoch_checkpoint(model_dir):
    """Whether the events hold batch_cost steps past the latest checkpoint, taken mid-epoch."""
    latest = _latest_number(model_dir)
    return latest % STEPS_PER_EPOCH != 0 and max(_batch_cost_steps(model_dir), default=0) > latest


def test_sigkill_between_sparse_checkpoints_skips_trained_batches_and_prunes_events(tmp_path):
    # Checkpoints every 5 steps, batch_cost every 2: a kill during a checkpoint write (after the
    # writers were flushed) leaves events past the previous checkpoint, which is mid-epoch, so the
    # resumed run must skip the epoch's trained mini-batches and prune those events.
    args = lambda model_dir: _args(model_dir, "adam", "--checkpoint_every_steps=5")  # noqa: E731
    reference = tmp_path / "uninterrupted"
    run_script("train.py", *args(reference))

    killed = tmp_path / "killed"
    restored = []
    for least in (5, 20):  # mid-epoch 1 (steps 1-13), then mid-epoch 2 (14-26)
        log = tmp_path / f"stdout-{least}.txt"
        with open(log, "w") as stdout:
            process = subprocess.Popen(script_command("train.py", *args(killed)), env=script_env(),
                                       stdout=stdout, stderr=subprocess.DEVNULL)
            _kill_frozen_when(
                process, lambda: _writing_checkpoint(killed) and _latest_number(killed) >= least,
                lambda: _logged_past_a_mid_epoch_checkpoint(killed),
            )
        assert process.returncode == -signal.SIGKILL
        latest = _latest_number(killed)
        assert latest % STEPS_PER_EPOCH != 0 and max(_batch_cost_steps(killed)) > latest
        restored.append(latest)
    completed = run_script("train.py", *args(killed))
    step_in_epoch = restored[-1] % STEPS_PER_EPOCH
    assert f"ckpt-{restored[-1]} (epoch 2, step {step_in_epoch} of {STEPS_PER_EPOCH})" in completed.stdout
    assert f"ckpt-{restored[0]} (epoch 1, step {restored[0]} of" in (tmp_path / "stdout-20.txt").read_text()

    expected, actual = _final_state(reference), _final_state(killed)
    assert expected.keys() == actual.keys()
    for key in expected:
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)
    train = read_scalars(killed / "train")
    assert [s for s, _ in train["batch_cost"]] == list(range(2, EPOCHS * STEPS_PER_EPOCH + 1, 2))
    assert [s for s, _ in train["epoch_loss"]] == [STEPS_PER_EPOCH * e for e in range(1, EPOCHS + 1)]
    reference_costs = read_scalars(reference / "train")["batch_cost"]
    assert train["batch_cost"] == reference_costs  # the re-trained steps cost the same, too


def _signal_after_first_epoch(model_dir, signal_number):
    """Starts a keras_adam run, sends it ``signal_number`` once epoch 1 has ended; returns
    (exit status, stderr)."""
    args = _args(model_dir, "keras_adam", "--checkpoint_every_steps=1000")
    process = subprocess.Popen(
        script_command("train.py", *args), env=script_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    for line in process.stdout:  # not a terminal: one line per epoch
        if line.startswith("epoch 1/"):
            process.send_signal(signal_number)
            break
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


def test_sigint_checkpoints_exits_non_zero_and_resumes(tmp_path):
    model_dir = tmp_path / "run"
    returncode, stderr = _signal_after_first_epoch(model_dir, signal.SIGINT)
    assert returncode == 128 + signal.SIGINT, stderr
    assert "interrupted: SIGINT: stopped after step" in stderr
    assert f"Resume with: python scripts/train.py --flagfile={model_dir / 'flags.txt'}" in stderr
    assert _latest_number(model_dir) > STEPS_PER_EPOCH  # mid-epoch 2, not at an epoch end

    resumed = run_script("train.py", f"--flagfile={model_dir / 'flags.txt'}")
    assert "resumed from" in resumed.stdout
    reference = tmp_path / "reference"
    run_script("train.py", *_args(reference, "keras_adam", "--checkpoint_every_steps=1000"))
    expected, actual = _final_state(reference), _final_state(model_dir)
    for key in expected:
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


def test_sigterm_checkpoints_exits_143_and_resumes(tmp_path):
    model_dir = tmp_path / "run"
    returncode, stderr = _signal_after_first_epoch(model_dir, signal.SIGTERM)
    assert returncode == 128 + signal.SIGTERM == 143, stderr
    message = stderr.strip().splitlines()[-1]
    assert message.startswith("interrupted: SIGTERM: stopped after step") and "(epoch 2, mini-batch" in message
    stopped = _latest_number(model_dir)
    assert f"checkpoint {model_dir / 'checkpoints'}/ckpt-{stopped}." in message
    assert message.endswith(f"Resume with: python scripts/train.py --flagfile={model_dir / 'flags.txt'}")

    resumed = run_script("train.py", f"--flagfile={model_dir / 'flags.txt'}")
    assert f"resumed from {model_dir / 'checkpoints'}/ckpt-{stopped} (epoch 2" in resumed.stdout
    history = json.loads((model_dir / "results.json").read_text())["history"]
    assert [r["epoch"] for r in history] == list(range(1, EPOCHS + 1))


def test_diverging_learning_rate_stops_at_the_nan_and_keeps_the_last_good_checkpoint(tmp_path):
    model_dir = tmp_path / "run"
    completed = run_script(
        "train.py", "--optimizer=keras_sgd", "--learning_rate=1e12", "--checkpoint_every_steps=2",
        f"--model_dir={model_dir}", "--noexport", check=False,
    )
    assert completed.returncode == 3
    message = completed.stderr.strip().splitlines()[-1]
    assert "non-finite cost or gradient" in message and "at step 3 (epoch 1" in message
    good = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    assert good.endswith("ckpt-2") and f"Last good checkpoint, left intact: {good}" in message
    reader = tf.train.load_checkpoint(good)
    assert all(np.isfinite(reader.get_tensor(k)).all() for k in reader.get_variable_to_shape_map()
               if reader.get_variable_to_dtype_map()[k].is_floating)

    skipped = run_script(
        "train.py", "--optimizer=keras_sgd", "--learning_rate=1e12", "--on_nonfinite=skip_step",
        "--epochs=1", f"--model_dir={tmp_path / 'skip'}", "--noexport",
    )
    assert "update skipped" in skipped.stdout


def _served_dev_accuracy(version_dir):
    """Dev accuracy of the SavedModel in ``version_dir``, reloaded and served as a client would."""
    from tfnet import data

    x_dev, y_dev = zip(*data.load("moons").dev.as_numpy_iterator())
    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    probabilities = next(iter(serve(features=tf.constant(np.stack(x_dev))).values())).numpy()
    return np.mean(probabilities.argmax(axis=1) == np.array(y_dev))


def _best_by_the_rule(history, min_delta):
    """(best dev accuracy, its epoch, epochs since) by early stopping's rule: an epoch counts as
    an improvement when it beats the best so far by more than min_delta."""
    best, best_epoch, waited = -1.0, None, 0
    for record in history:
        if record["dev_accuracy"] > best + min_delta:
            best, best_epoch, waited = record["dev_accuracy"], record["epoch"], 0
        else:
            waited += 1
    return best, best_epoch, waited


# keras_adam at 0.01, seed 0 (dev accuracies 0.925 0.93 0.945 0.97 0.97 0.985 0.97 0.985 ...).
_EARLY = ["--optimizer=keras_adam", "--learning_rate=0.01", "--seed=0", "--deterministic"]


def test_early_stopping_exports_the_best_weights_and_a_rerun_trains_no_further(tmp_path):
    model_dir, export_dir = tmp_path / "run", tmp_path / "saved_models"
    args = [*_EARLY, "--epochs=10", "--early_stopping_patience=3", "--early_stopping_min_delta=0.02",
            f"--model_dir={model_dir}", f"--export_dir={export_dir}"]
    run_script("train.py", *args)
    results = json.loads((model_dir / "results.json").read_text())
    history = results["history"]
    best, best_epoch, waited = _best_by_the_rule(history, 0.02)
    assert results["stopped_early"] and waited == 3 and len(history) < 10
    # What makes this run a test: the best epoch is not the last, a later epoch beat it by less
    # than min_delta (so the highest logged accuracy is not the best), and the last epoch's
    # training accuracy differs from the best epoch's.
    assert best_epoch < len(history) and max(r["dev_accuracy"] for r in history) > best
    best_record = history[best_epoch - 1]
    assert best_record["train_accuracy"] != history[-1]["train_accuracy"]

    logged = [v for _, v in read_scalars(model_dir / "dev")["epoch_accuracy"]]
    assert logged[best_epoch - 1] == pytest.approx(best, abs=1e-7)
    assert results["best_dev_accuracy"] == best
    assert results["exported_dev_accuracy"] == pytest.approx(best, abs=1e-7)
    assert results["exported_dev_loss"] == pytest.approx(best_record["dev_loss"], rel=1e-6)
    assert _served_dev_accuracy(export_dir / "moons" / "1") == pytest.approx(best, abs=1e-7)
    # The diagnosis is the exported (best) model's, not the last epoch's.
    assert results["diagnosis"] == diagnosis.diagnose(1 - best_record["train_accuracy"], 1 - best)

    # The same command again (as after a kill during the final export): no further epoch.
    before = _final_state(model_dir)
    rerun = run_script("train.py", *args)
    assert "early stopping: no dev improvement for 3 epochs" in rerun.stdout
    assert not any(line.startswith("epoch ") for line in rerun.stdout.splitlines())
    again = json.loads((model_dir / "results.json").read_text())
    assert again["history"] == history and again["stopped_early"]
    after = _final_state(model_dir)
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    assert len(read_scalars(model_dir / "dev")["epoch_accuracy"]) == len(history)
    assert export.versions(str(export_dir / "moons")) == [1, 2]  # the best weights, again
    assert _served_dev_accuracy(export_dir / "moons" / "2") == pytest.approx(best, abs=1e-7)


def test_a_run_resumed_with_early_stopping_switched_on_exports_its_best_weights(tmp_path):
    model_dir, export_dir = tmp_path / "run", tmp_path / "saved_models"
    run_script("train.py", *_EARLY, "--epochs=7", f"--model_dir={model_dir}", "--noexport")
    # best/ is kept without early stopping too, because patience may be set on resume.
    assert tf.train.latest_checkpoint(str(model_dir / "best"))
    history = json.loads((model_dir / "results.json").read_text())["history"]
    best, best_epoch, waited = _best_by_the_rule(history, 0.0)
    assert best_epoch < len(history) and history[-1]["dev_accuracy"] < best  # restoring matters

    resumed = run_script("train.py", *_EARLY, "--epochs=7", f"--early_stopping_patience={waited}",
                         f"--model_dir={model_dir}", f"--export_dir={export_dir}")
    assert "early stopping" in resumed.stdout
    results = json.loads((model_dir / "results.json").read_text())
    assert results["stopped_early"] and results["epochs"] == 7
    assert results["best_dev_accuracy"] == best
    assert results["exported_dev_accuracy"] == pytest.approx(best, abs=1e-7)
    assert _served_dev_accuracy(export_dir / "moons" / "1") == pytest.approx(best, abs=1e-7)


def test_an_export_killed_midway_leaves_nothing_that_loads_and_the_next_export_cleans_up(tmp_path):
    code = (
        "import sys, keras\n"
        "from tfnet.training import export\n"
        "inputs = keras.Input((2,), name='features')\n"
        "hidden = keras.layers.Dense(4096)(keras.layers.Dense(4096)(inputs))\n"
        "model = keras.Model(inputs, keras.layers.Dense(2)(hidden))\n"
        "print('exporting', flush=True)\n"
        "export.export_model(model, sys.argv[1], 'big')\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=script_env(),
                               stdout=subprocess.PIPE, text=True)
    root = tmp_path / "big"
    _kill_when(process, lambda: root.is_dir() and any(
        n.startswith(".tmp-export-") and os.listdir(root / n) for n in os.listdir(root)))
    assert export.versions(str(root)) == []
    left = [n for n in os.listdir(root) if n.startswith(".tmp-export-")]
    assert left, "the kill was meant to leave a staging directory"
    # Nothing under the model root loads as a model, the staging directory's insides included.
    for directory, _, _ in os.walk(root):
        assert not tf.saved_model.contains_saved_model(directory), directory

    # A live export's staging directory (this process's) is left alone; the killed one goes.
    live = tempfile.mkdtemp(prefix=f".tmp-export-{socket.gethostname()}-{os.getpid()}-", dir=root)
    inputs = keras.Input((2,), name="features")
    path = export.export_model(keras.Model(inputs, keras.layers.Dense(2)(inputs)), str(tmp_path), "big")
    assert path == str(root / "1") and tf.saved_model.contains_saved_model(path)
    assert sorted(os.listdir(root)) == sorted(["1", os.path.basename(live)])


UNUSABLE = {
    "model_dir_is_a_file": ("--model_dir={file}", "model_dir must be a directory, but"),
    "export_dir_is_a_file": ("--export_dir={file}", "export_dir must be a directory, but"),
    "export_dir_under_a_file": ("--export_dir={file}/models", "export_dir must be a directory path, but"),
    "model_dir_not_writable": ("--model_dir=/proc/tfnet-run", "model_dir must be writable, but /proc is not"),
    "export_dir_not_writable": ("--export_dir=/proc/tfnet-models", "export_dir must be writable, but /proc is not"),
}


@pytest.mark.parametrize("case", sorted(UNUSABLE))
def test_unusable_paths_fail_at_start_up(tmp_path, case):
    file = tmp_path / "a_file"
    file.write_text("not a directory")
    flag, message = UNUSABLE[case]
    other = [] if "model_dir" in flag else [f"--model_dir={tmp_path / 'run'}"]
    if "export_dir" not in flag:
        other.append(f"--export_dir={tmp_path / 'saved_models'}")
    completed = run_script("train.py", flag.format(file=file), *other, check=False,
                           env=script_env(tf_cpp_min_log_level=None))
    _one_error_line(completed, message)
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


def test_a_full_disk_fails_at_start_up(tmp_path):
    with pytest.raises(paths.UnusablePathError, match=r"model_dir needs at least .* MiB free.*\(disk full\)"):
        paths.check_writable_dir(str(tmp_path / "run"), "model_dir", min_free_bytes=2**62)


# Makes the file system under $TFNET_FULL_DISK look full (1 MiB free) to shutil.disk_usage,
# which is what tfnet.paths asks.
_FULL_DISK_SITECUSTOMIZE = """
import os, shutil
_disk_usage = shutil.disk_usage
def disk_usage(path):
    usage = _disk_usage(path)
    full = os.path.realpath(os.environ["TFNET_FULL_DISK"])
    if os.path.commonpath([full, os.path.realpath(path)]) == full:
        usage = usage._replace(free=2**20)
    return usage
shutil.disk_usage = disk_usage
"""


@pytest.mark.parametrize("flag", ["model_dir", "export_dir"])
def test_a_full_disk_fails_at_start_up_through_the_script(tmp_path, flag):
    site, full = tmp_path / "site", tmp_path / "full"
    site.mkdir()
    full.mkdir()
    (site / "sitecustomize.py").write_text(_FULL_DISK_SITECUSTOMIZE)
    env = script_env(tf_cpp_min_log_level=None)
    env.update(PYTHONPATH=f"{site}{os.pathsep}{env['PYTHONPATH']}", TFNET_FULL_DISK=str(full))
    dirs = {"model_dir": tmp_path / "run", "export_dir": tmp_path / "saved_models", flag: full / flag}
    completed = run_script("train.py", *(f"--{k}={v}" for k, v in dirs.items()), check=False, env=env)
    _one_error_line(completed, f"{flag} needs at least 64 MiB free, but the disk holding {full} "
                               "has 1.0 MiB (disk full)")
    assert os.listdir(full) == [] and sorted(os.listdir(tmp_path)) == ["full", "site"]


def test_noresume_refuses_an_existing_run_unless_overwrite(tmp_path):
    model_dir = tmp_path / "run"
    run_script("train.py", "--optimizer=keras_sgd", "--epochs=1", f"--model_dir={model_dir}", "--noexport")
    refused = run_script("train.py", "--optimizer=keras_sgd", "--epochs=1", f"--model_dir={model_dir}",
                         "--noexport", "--noresume", check=False)
    assert refused.returncode == 1 and "already holds a run and --noresume was given" in refused.stderr
    different = run_script("train.py", "--optimizer=keras_sgd", "--epochs=1", f"--model_dir={model_dir}",
                           "--noexport", "--hidden_units=8", check=False)
    assert different.returncode == 1 and "holds a different run (hidden_units: [64, 32] -> [8])" in different.stderr
    run_script("train.py", "--optimizer=keras_sgd", "--epochs=1", f"--model_dir={model_dir}",
               "--noexport", "--noresume", "--overwrite", "--hidden_units=8")
    assert json.loads((model_dir / "config.json").read_text())["hidden_units"] == [8]
