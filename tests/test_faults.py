"""The fault drill (issue 18): damaged checkpoints, a write killed midway, a second writer and
bad data.

Every fault asserts how the run ends, the one line that says what happened, and that nothing
good was lost: a run that resumes ends bit-identical (deterministic, every checkpointed tensor)
to an uninterrupted one. What a user sees of scripts/train.py (exit status, stderr) is asserted
on subprocesses; what happens to the files and the state, on runs in this process, which cost a
second instead of TensorFlow's start-up.
"""

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config  # no public disabler

from helpers import train_config
from helpers import (
    assert_same_final_state,
    kill_frozen_when,
    latest_checkpoint_number,
    one_error_line,
    run_script,
    script_command,
    script_env,
    write_tfds,
    writing_checkpoint,
)
from tfnet import data, locks, training
from tfnet.training import recovery, run_dir

# Small deterministic moons runs: 13 steps an epoch, a checkpoint at every step, 5 kept.
RUN = dict(dataset="moons", epochs=2, hidden_units=(8,), seed=5, deterministic=True,
           checkpoint_every_steps=1, keep_checkpoints=5, jit_compile="off", export=False)


def _args(model_dir, **overrides):
    """The flags of ``train_config(model_dir, RUN, **overrides)``, for scripts/train.py."""
    return train_config(model_dir, RUN, **overrides).to_flags().splitlines()


def _start(args, stdout=subprocess.DEVNULL):
    return subprocess.Popen(script_command("train.py", *args), env=script_env(), stdout=stdout,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 2-epoch run: the others must end as it does. Its last checkpoints,
    22 to 26, are what the damaged-checkpoint cases copy and damage."""
    model_dir = tmp_path_factory.mktemp("reference") / "run"
    training.train(train_config(model_dir, RUN), verbose=0)
    return model_dir


# -- Damaged checkpoints ----------------------------------------------------------------------

def _truncate(prefix):
    data_file = f"{prefix}.data-00000-of-00001"
    os.truncate(data_file, os.path.getsize(data_file) // 2)


def _garbage_index(prefix):
    index = f"{prefix}.index"
    with open(index, "wb") as f:
        f.write(np.random.default_rng(0).bytes(os.path.getsize(index)))


def _remove_shard(prefix):
    os.remove(f"{prefix}.data-00000-of-00001")


def _other_model(prefix):
    """Replaces the checkpoint by one of a run with 16 hidden units instead of 8, as a copy
    from another run would: same objects, weights of other shapes."""
    with tempfile.TemporaryDirectory() as other_dir:
        other = training.Trainer(train_config(other_dir, RUN, hidden_units=(16,), deterministic=False),
                                 verbose=0)
        other.close()
    _remove_shard(prefix)
    other.state.checkpoint.save_counter  # noqa: B018 (made: a saved checkpoint holds it)
    other.state.checkpoint.write(prefix)  # a new index and data file


def _foreign_model(prefix):
    """Replaces the checkpoint by one of another program's model: none of the run's objects."""
    inputs = keras.Input((2,))
    foreign = tf.train.Checkpoint(model=keras.Model(inputs, keras.layers.Dense(2)(inputs)))
    _remove_shard(prefix)
    foreign.save_counter  # noqa: B018 (made: a saved checkpoint holds it)
    foreign.write(prefix)


# Case -> (what is done to a checkpoint, the reason its warning gives for checkpoint N).
DAMAGES = {
    "truncated_data_file": (_truncate, "ckpt-{n}.data-00000-of-00001 cannot be read (Read less "
                                       "bytes than requested, reading "),
    "garbage_index": (_garbage_index, "ckpt-{n}.index cannot be read ("),
    "missing_shard": (_remove_shard, "ckpt-{n}.data-00000-of-00001 is missing"),
    "wrong_model": (_other_model, "it does not restore into this model (Received incompatible "
                                  "tensor with shape (2, 16) when attempting to restore variable "
                                  "with shape (2, 8)"),
    "foreign_model": (_foreign_model, "it does not restore into this model (Found "),
}


def _damaged_copy(reference, model_dir, damages):
    """Copies the reference run to ``model_dir`` and damages checkpoint n by each (case, n) of
    ``damages``; -> {damaged file name: its bytes}."""
    shutil.copytree(reference, model_dir)
    checkpoints = model_dir / "checkpoints"
    for case, n in damages:
        DAMAGES[case][0](str(checkpoints / f"ckpt-{n}"))
    return {path.name: path.read_bytes() for _, n in damages
            for path in checkpoints.glob(f"ckpt-{n}.*")}


def _assert_moved_aside(model_dir, damaged):
    """The damaged files are in checkpoints/damaged/, as they were."""
    for name, content in damaged.items():
        assert (model_dir / "checkpoints" / "damaged" / name).read_bytes() == content, name


@pytest.mark.parametrize("case", sorted(DAMAGES))
def test_a_damaged_checkpoint_is_moved_aside_and_the_run_resumes_from_the_one_before(
        reference, tmp_path, capsys, case):
    model_dir = tmp_path / "run"
    damaged = _damaged_copy(reference, model_dir, [(case, 26)])
    training.train(train_config(model_dir, RUN), verbose=2)
    checkpoints = model_dir / "checkpoints"
    out, err = capsys.readouterr()
    [warning] = err.splitlines()
    assert warning.startswith(f"warning: checkpoint {checkpoints / 'ckpt-26'} skipped: "
                              + DAMAGES[case][1].format(n=26)), warning
    assert warning.endswith(f". Moved its files to {checkpoints / 'damaged'}."), warning
    assert f"resumed from {checkpoints / 'ckpt-25'} (epoch 2, step 12 of 13)" in out
    _assert_moved_aside(model_dir, damaged)
    assert_same_final_state(reference, model_dir)


def test_with_no_readable_checkpoint_the_run_stops_with_one_error_and_moves_them_all_aside(
        reference, tmp_path):
    model_dir = tmp_path / "run"
    damages = list(zip(sorted(DAMAGES), (26, 25, 24, 23, 22)))  # every kind, each once
    damaged = _damaged_copy(reference, model_dir, damages)
    completed = run_script("train.py", *_args(model_dir), check=False)
    assert completed.returncode == 1
    # One warning per checkpoint, newest first, then the error: nothing else (no traceback,
    # none of TensorFlow's warnings about the failed restores).
    checkpoints = model_dir / "checkpoints"
    *warnings, error = completed.stderr.splitlines()
    assert len(warnings) == 5
    for warning, (case, n) in zip(warnings, damages):
        assert warning.startswith(f"warning: checkpoint {checkpoints / f'ckpt-{n}'} skipped: "
                                  + DAMAGES[case][1].format(n=n)), warning
    assert error == (
        f"error: {checkpoints}: none of its checkpoints can be read, 5 tried (each named above "
        f"with its reason, and moved to {checkpoints / 'damaged'}). Run the same command again "
        "to start over from step 0.")
    assert "epoch" not in completed.stdout
    _assert_moved_aside(model_dir, damaged)
    assert not list(checkpoints.glob("ckpt-*"))
    # The state file went too: the directory lists no checkpoint, so a rerun starts over.
    assert (checkpoints / "damaged" / "checkpoint").exists()
    assert tf.train.get_checkpoint_state(str(checkpoints)) is None


def _restore_any(checkpoints):
    """recovery.restore_newest into a bare tf.train.Checkpoint: any intact checkpoint fits (its
    one object, save_counter, is in every one); -> (restored prefix, warnings)."""
    lines = []
    restored = recovery.restore_newest(str(checkpoints), tf.train.Checkpoint(), partial=True,
                                       warn=lines.append)
    return restored, lines


def test_the_state_file_no_longer_lists_a_checkpoint_moved_aside(reference, tmp_path):
    checkpoints = tmp_path / "run" / "checkpoints"
    _damaged_copy(reference, tmp_path / "run", [("truncated_data_file", 26)])
    restored, lines = _restore_any(checkpoints)
    assert restored == str(checkpoints / "ckpt-25") and len(lines) == 1
    state = tf.train.get_checkpoint_state(str(checkpoints))
    assert state.model_checkpoint_path == str(checkpoints / "ckpt-25")
    assert list(state.all_model_checkpoint_paths) == [
        str(checkpoints / f"ckpt-{n}") for n in (22, 23, 24, 25)]
    assert len(state.all_model_checkpoint_timestamps) == 4
    # Paths stay relative, as the manager writes them, so the run directory can be moved.
    assert 'model_checkpoint_path: "ckpt-25"' in (checkpoints / "checkpoint").read_text()


# What a crash of the machine (or a flaky file system) can leave of the state file -> the
# reason given.
BAD_STATE_FILES = {
    "empty": ("", "Invalid checkpoint state loaded from {checkpoints}"),
    "garbage": ("garbage {", "not a checkpoint state (CheckpointState text proto)"),
}


@pytest.mark.parametrize("case", sorted(BAD_STATE_FILES))
def test_an_unreadable_state_file_is_moved_aside_and_the_checkpoints_found_by_their_files(
        reference, tmp_path, case):
    checkpoints = tmp_path / "run" / "checkpoints"
    shutil.copytree(reference, tmp_path / "run")
    content, reason = BAD_STATE_FILES[case]
    (checkpoints / "checkpoint").write_text(content)
    logged = []
    handler = logging.Handler()
    handler.emit = logged.append
    tf.get_logger().addHandler(handler)  # TensorFlow would log a parse error
    try:
        restored, lines = _restore_any(checkpoints)
    finally:
        tf.get_logger().removeHandler(handler)
    assert restored == str(checkpoints / "ckpt-26")
    assert lines == [f"checkpoint state file {checkpoints / 'checkpoint'} skipped: "
                     f"{reason.format(checkpoints=checkpoints)}. Moved it to "
                     f"{checkpoints / 'damaged'}. Looking for checkpoints by their index files."]
    assert not logged, [record.getMessage() for record in logged]
    assert (checkpoints / "damaged" / "checkpoint").read_text() == content
    state = tf.train.get_checkpoint_state(str(checkpoints))
    assert list(state.all_model_checkpoint_paths) == [
        str(checkpoints / f"ckpt-{n}") for n in (22, 23, 24, 25, 26)]


def test_lost_best_weights_stop_the_export_instead_of_exporting_others(reference, tmp_path):
    model_dir = tmp_path / "run"
    shutil.copytree(reference, model_dir)
    [best] = (model_dir / "best").glob("ckpt-*.index")
    _truncate(str(best)[:-len(".index")])
    with pytest.raises(recovery.NoReadableCheckpointError, match=r"none of its checkpoints can "
                       r"be read, 1 tried .*The best weights are lost: resume with "
                       r"--early_stopping_patience=0"):
        training.train(train_config(model_dir, RUN, early_stopping_patience=5), verbose=0)
    # Moved aside, the same command still refuses: the run recorded a best that is not there.
    with pytest.raises(recovery.NoReadableCheckpointError, match="no checkpoint of the best "
                       "weights, dev accuracy"):
        training.train(train_config(model_dir, RUN, early_stopping_patience=5), verbose=0)


# -- A write killed midway --------------------------------------------------------------------

def test_a_run_killed_while_writing_a_checkpoint_resumes_from_the_last_complete_one(
        reference, tmp_path, capsys):
    model_dir = tmp_path / "run"
    process = _start(_args(model_dir))
    # Frozen, then killed, while a checkpoint of epoch 2 is being written (its _temp exists).
    kill_frozen_when(process, lambda: (writing_checkpoint(model_dir)
                                       and latest_checkpoint_number(model_dir) >= 16),
                     lambda: writing_checkpoint(model_dir))
    assert process.returncode == -signal.SIGKILL
    checkpoints = model_dir / "checkpoints"
    unfinished = [p.name for p in checkpoints.iterdir() if p.name.endswith("_temp")]
    latest = latest_checkpoint_number(model_dir)
    # TensorFlow's guarantee: the state file names a complete checkpoint, not the one written.
    assert unfinished and all(int(n[len("ckpt-"):-len("_temp")]) > latest for n in unfinished)
    reader = tf.train.load_checkpoint(str(checkpoints / f"ckpt-{latest}"))
    for key in reader.get_variable_to_shape_map():
        reader.get_tensor(key)  # every tensor reads, checksum verified

    # The killed run's lock went with it: the same run resumes, with no warning.
    training.train(train_config(model_dir, RUN), verbose=2)
    out, err = capsys.readouterr()
    assert f"resumed from {checkpoints / f'ckpt-{latest}'} (epoch 2" in out and not err
    assert not any(p.name.endswith("_temp") for p in checkpoints.iterdir())  # cleaned up
    assert_same_final_state(reference, model_dir)


# -- A second writer --------------------------------------------------------------------------

def _files(directory):
    return {path: path.read_bytes() for path in directory.rglob("*") if path.is_file()}


def test_a_second_run_on_a_model_dir_in_use_is_refused_and_deletes_nothing(reference, tmp_path):
    model_dir = tmp_path / "run"
    training.train(train_config(model_dir, RUN, epochs=1), verbose=0)
    determinism_was_enabled = tf_config.is_op_determinism_enabled()
    first = training.Trainer(train_config(model_dir, RUN), verbose=0)  # holds the lock until close()
    try:
        before = _files(model_dir)
        # The most destructive second command: it would delete the run it found.
        second = run_script("train.py", *_args(model_dir, resume=False, overwrite=True),
                            check=False)
        one_error_line(second, f"model_dir {model_dir}: another run is writing it, process "
                               f"{os.getpid()} on {socket.gethostname()} (it holds "
                               f"{model_dir / run_dir.LOCK_FILE}). Wait for that run to end or "
                               "stop it, or choose another --model_dir.")
        assert _files(model_dir) == before
        first.run()
    finally:
        first.close()
        if not determinism_was_enabled:  # as training.train leaves it
            tf_config.disable_op_determinism()
    assert_same_final_state(reference, model_dir)
    locks.DirectoryLock.acquire(str(model_dir), run_dir.LOCK_FILE).release()  # free again


def test_overwriting_a_run_keeps_the_lock_file_it_holds(tmp_path):
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    (model_dir / "checkpoints").mkdir()
    lock = run_dir.prepare(train_config(model_dir, RUN, resume=False, overwrite=True))
    try:
        assert os.listdir(model_dir) == [run_dir.LOCK_FILE]  # the old run deleted, not the lock
        with pytest.raises(locks.LockHeldError, match=f"process {os.getpid()} on "):
            locks.DirectoryLock.acquire(str(model_dir), run_dir.LOCK_FILE)
    finally:
        lock.release()


# -- Bad data ---------------------------------------------------------------------------------

BAD_DATA = ("bad_label", "mismatched_split_shapes", "non_finite_feature")

def _moons(m, seed, width=2):
    x, y = data.make_embedded("moons", num_examples=m, seed=seed)
    return np.pad(x, [(0, 0), (0, width - 2)]), y


def _bad_tfds_datasets():
    """Case -> (dataset name, feature shape, {split: (x, y)}, the error line's start)."""
    x, y = _moons(40, 0)
    test = _moons(10, 1)
    nonfinite, unlabelled = x.copy(), y.copy()
    nonfinite[17, 1] = np.inf
    unlabelled[35] = -1  # TFDS' "no label"; train[80%:] is examples 32-39, so dev example 3
    return {
        "non_finite_feature": (
            "drill_nonfinite", (2,), {"train": (nonfinite, y), "test": test},
            "dataset drill_nonfinite, split train, example 17: feature [1] is not finite, inf. "
            "Repair or drop the example"),
        "bad_label": (
            "drill_unlabelled", (2,), {"train": (x, unlabelled), "test": test},
            "dataset drill_unlabelled, split dev, example 3: label outside [0, 2), -1. Relabel "
            "or drop the example"),
        "mismatched_split_shapes": (
            "drill_widened", (None,), {"train": (x, y), "test": _moons(10, 1, width=3)},
            "dataset drill_widened, split test, example 0: features of another shape than split "
            "train's (2,), (3,). Every split must hold examples of one shape"),
    }


@pytest.fixture(scope="module")
def bad_tfds_runs(tmp_path_factory):
    """Each bad dataset written as a prepared TFDS dataset, and scripts/train.py started on
    each, all at once; -> case: (completed run, its model_dir)."""
    import tensorflow_datasets as tfds

    root = tmp_path_factory.mktemp("bad_data")
    started = {}
    for case, (name, shape, splits, _) in _bad_tfds_datasets().items():
        write_tfds(str(root / "tfds"), name, splits, "features",
                   tfds.features.Tensor(shape=shape, dtype=np.float32), num_classes=2)
        model_dir = root / case
        args = _args(model_dir, dataset=name, data_dir=str(root / "tfds"))
        started[case] = (_start(args, stdout=subprocess.PIPE), model_dir)
    outcomes = {}
    for case, (process, model_dir) in started.items():
        stdout, stderr = process.communicate(timeout=300)
        outcomes[case] = (subprocess.CompletedProcess(process.args, process.returncode, stdout,
                                                      stderr), model_dir)
    return outcomes


@pytest.mark.parametrize("case", BAD_DATA)
def test_bad_tfds_data_stops_the_run_before_training_with_one_line(bad_tfds_runs, case):
    completed, model_dir = bad_tfds_runs[case]
    one_error_line(completed, _bad_tfds_datasets()[case][3])
    assert os.listdir(model_dir) == [run_dir.LOCK_FILE]  # nothing written but the lock


def _spoil_features(x, y, test):
    x = x.copy()
    x[5, 0] = np.nan
    return x, y


def _spoil_test_labels(x, y, test):
    return x, (np.where(np.arange(len(y)) == 7, 2, y) if test else y)


def _widen_test_features(x, y, test):
    return np.pad(x, [(0, 0), (0, int(test))]), y


# Case -> (how make_embedded's arrays are spoiled, the error's start).
EMBEDDED = {
    "non_finite_feature": (_spoil_features, "dataset moons, split train, example 5: feature [0] "
                                            "is not finite, nan."),
    "bad_label": (_spoil_test_labels, "dataset moons, split test, example 7: label outside "
                                      "[0, 2), 2."),
    "mismatched_split_shapes": (_widen_test_features, "dataset moons, split test, example 0: "
                                                      "features of another shape than the "
                                                      "model's input (2,), (3,)."),
}


@pytest.mark.parametrize("case", BAD_DATA)
def test_bad_embedded_data_stops_the_trainer_before_the_model_is_built(monkeypatch, tmp_path, case):
    spoil, message = EMBEDDED[case]
    make_embedded = data.make_embedded

    def spoiled(name, num_examples=None, seed=0, noise=None):
        x, y = make_embedded(name, num_examples, seed, noise)
        return spoil(x, y, test=num_examples is not None)  # the test split is asked by size

    monkeypatch.setattr("tfnet.data.embedded.make_embedded", spoiled)
    built = []
    monkeypatch.setattr("tfnet.build.model", lambda *args: built.append(args))
    with pytest.raises(data.BadDataError) as raised:
        training.Trainer(train_config(tmp_path / "run", RUN, deterministic=False), verbose=0)
    assert str(raised.value).startswith(message) and not built
