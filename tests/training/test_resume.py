"""Training that loses nothing, through scripts/train.py as a user runs it: SIGKILL anywhere and
an exact resume under another K, SIGINT / SIGTERM, exit statuses, an atomic export, unusable
paths at start-up."""

import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest
import tensorflow as tf

from helpers import assert_same_final_state
from helpers import kill_frozen_when as _kill_frozen_when
from helpers import latest_checkpoint_number as _latest_number
from helpers import one_error_line as _one_error_line
from helpers import read_scalars, run_script, script_command, script_env
from helpers import writing_checkpoint as _writing_checkpoint
from tfnet import config as config_lib
from tfnet import paths, training
from tfnet.training import run_dir

STEPS_PER_EPOCH = 13  # moons: 800 training examples, batch 64
EPOCHS = 4


def _args(model_dir, *extra):
    """The run every test here resumes; the flags in ``extra`` (checkpoint cadence, K) may change
    on resume and do not change the result."""
    return [
        f"--epochs={EPOCHS}", "--seed=3", "--deterministic", "--log_every_steps=2", "--noexport",
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


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, default K, checkpointed at its end only."""
    model_dir = tmp_path_factory.mktemp("reference") / "run"
    run_script("train.py", *_args(model_dir))
    return model_dir


def test_sigkill_anywhere_then_resume_under_another_k_is_bit_identical(tmp_path, reference):
    # Killed runs: one step per call and a checkpoint after every step; the resumed run: the
    # automatic K, checkpointed at the end only.
    killed = tmp_path / "killed"
    per_step = ["--steps_per_loop=1", "--checkpoint_every_steps=1"]
    kill_points = [
        lambda: _latest_number(killed) >= 8,  # mid-epoch 1 (steps 1-13)
        lambda: _writing_checkpoint(killed) and _latest_number(killed) >= 20,  # mid-write, epoch 2
        lambda: _latest_number(killed) >= 2 * STEPS_PER_EPOCH,  # right after an epoch end
    ]
    for condition in kill_points:
        process = subprocess.Popen(
            script_command("train.py", *_args(killed, *per_step)), env=script_env(),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _kill_when(process, condition)
        assert process.returncode == -signal.SIGKILL
    completed = run_script("train.py", *_args(killed))
    assert "resumed from" in completed.stdout
    assert_same_final_state(reference, killed)

    # TensorBoard: every epoch and every logged step exactly once, in order, same values.
    for directory in (reference, killed):
        train = read_scalars(directory / "train")
        assert [s for s, _ in train["epoch_loss"]] == [STEPS_PER_EPOCH * e for e in range(1, EPOCHS + 1)]
        assert [s for s, _ in train["batch_cost"]] == list(range(2, EPOCHS * STEPS_PER_EPOCH + 1, 2))
        assert len(read_scalars(directory / "dev")["epoch_accuracy"]) == EPOCHS
    assert read_scalars(killed / "train") == read_scalars(reference / "train")
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


def test_sigkill_between_sparse_checkpoints_skips_trained_batches_and_prunes_events(
        tmp_path, reference):
    # Checkpoints every 5 steps, batch_cost every 2: a kill during a checkpoint write (after the
    # writers were flushed) leaves events past the previous checkpoint, which is mid-epoch, so the
    # resumed run must skip the epoch's trained mini-batches and prune those events.
    args = lambda model_dir: _args(model_dir, "--checkpoint_every_steps=5")  # noqa: E731

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

    assert_same_final_state(reference, killed)
    train = read_scalars(killed / "train")
    assert [s for s, _ in train["batch_cost"]] == list(range(2, EPOCHS * STEPS_PER_EPOCH + 1, 2))
    assert [s for s, _ in train["epoch_loss"]] == [STEPS_PER_EPOCH * e for e in range(1, EPOCHS + 1)]
    reference_costs = read_scalars(reference / "train")["batch_cost"]
    assert train["batch_cost"] == reference_costs  # the re-trained steps cost the same, too


def _signal_after_an_epoch(model_dir, signal_number, args):
    """Runs train.py, sends it ``signal_number`` after its first epoch line; returns (status,
    stdout, last line of stderr)."""
    process = subprocess.Popen(
        script_command("train.py", *args), env=script_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    lines = []
    for line in process.stdout:  # not a terminal: one line per epoch
        lines.append(line)
        if line.startswith("epoch "):
            process.send_signal(signal_number)
            break
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, "".join(lines) + stdout, stderr.strip().splitlines()[-1]


def test_sigint_then_sigterm_checkpoint_exit_128_plus_their_number_and_the_run_resumes(
        tmp_path, reference):
    model_dir = tmp_path / "run"
    flagfile = f"--flagfile={model_dir / 'flags.txt'}"
    resumed_from = None
    for signal_number, args in ((signal.SIGINT, _args(model_dir)), (signal.SIGTERM, [flagfile])):
        status, stdout, message = _signal_after_an_epoch(model_dir, signal_number, args)
        assert status == 128 + signal_number, message
        if resumed_from:
            assert f"resumed from {model_dir / 'checkpoints'}/ckpt-{resumed_from} (epoch" in stdout
        stopped = _latest_number(model_dir)  # the end of the call the signal arrived in
        epoch, batch = divmod(stopped - 1, STEPS_PER_EPOCH)
        name = signal.Signals(signal_number).name
        assert message.startswith(f"interrupted: {name}: stopped after step {stopped} (epoch "
                                  f"{epoch + 1}, mini-batch {batch + 1}); checkpoint "
                                  f"{model_dir / 'checkpoints'}/ckpt-{stopped}."), message
        assert message.endswith(f"Resume with: python scripts/train.py {flagfile}")
        assert resumed_from is None or stopped > resumed_from
        resumed_from = stopped
    assert resumed_from < EPOCHS * STEPS_PER_EPOCH

    resumed = run_script("train.py", flagfile)
    assert f"resumed from {model_dir / 'checkpoints'}/ckpt-{resumed_from} (epoch" in resumed.stdout
    history = json.loads((model_dir / "results.json").read_text())["history"]
    assert [r["epoch"] for r in history] == list(range(1, EPOCHS + 1))
    assert_same_final_state(reference, model_dir)


def test_a_non_finite_cost_exits_3(tmp_path):
    completed = run_script("train.py", "--optimizer=keras_sgd", "--learning_rate=1e12",
                           f"--model_dir={tmp_path / 'run'}", "--noexport", check=False)
    assert completed.returncode == 3
    assert "non-finite cost or gradient" in completed.stderr.strip().splitlines()[-1]


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
    name, value = flag[2:].format(file=file).split("=")
    paths_of_the_run = {"model_dir": str(tmp_path / "run"), "export_dir": str(tmp_path / "saved_models")}
    paths_of_the_run[name] = value
    with pytest.raises(paths.UnusablePathError, match=re.escape(message)):
        training.train(config_lib.TrainConfig(**paths_of_the_run), verbose=0)
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


def test_an_unusable_path_stops_the_script_with_one_line(tmp_path):
    file = tmp_path / "a_file"
    file.write_text("not a directory")
    completed = run_script("train.py", f"--model_dir={file}", f"--export_dir={tmp_path / 'saved_models'}",
                           check=False, env=script_env(tf_cpp_min_log_level=None))
    _one_error_line(completed, "model_dir must be a directory, but")
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


def test_a_full_disk_fails_at_start_up(tmp_path):
    with pytest.raises(paths.UnusablePathError, match=r"model_dir needs at least .* MiB free.*\(disk full\)"):
        paths.check_writable_dir(str(tmp_path / "run"), "model_dir", min_free_bytes=2**62)


@pytest.mark.parametrize("flag", ["model_dir", "export_dir"])
def test_a_full_disk_fails_before_any_work(tmp_path, flag, monkeypatch):
    full = tmp_path / "full"
    full.mkdir()
    real_disk_usage = shutil.disk_usage

    def disk_usage(path):  # the file system under `full` looks full: 1 MiB free
        usage = real_disk_usage(path)
        if os.path.commonpath([str(full), os.path.realpath(path)]) == str(full):
            usage = usage._replace(free=2**20)
        return usage

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    dirs = {"model_dir": tmp_path / "run", "export_dir": tmp_path / "saved_models", flag: full / flag}
    with pytest.raises(paths.UnusablePathError, match=re.escape(
            f"{flag} needs at least 64 MiB free, but the disk holding {full} has 1.0 MiB (disk full)")):
        training.train(config_lib.TrainConfig(**{k: str(v) for k, v in dirs.items()}), verbose=0)
    assert os.listdir(full) == [] and sorted(os.listdir(tmp_path)) == ["full"]


def test_noresume_refuses_an_existing_run_unless_overwrite(tmp_path):
    def config(**overrides):
        return config_lib.TrainConfig(optimizer="keras_sgd", epochs=1, model_dir=str(tmp_path / "run"),
                                      export=False, jit_compile="off", **overrides)

    training.train(config(), verbose=0)
    with pytest.raises(run_dir.RunDirError, match="already holds a run and --noresume was given"):
        training.train(config(resume=False), verbose=0)
    with pytest.raises(run_dir.RunDirError, match=re.escape("holds a different run (hidden_units: [64, 32] -> [8])")):
        training.train(config(hidden_units=(8,)), verbose=0)
    training.train(config(resume=False, overwrite=True, hidden_units=(8,)), verbose=0)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["hidden_units"] == [8]
