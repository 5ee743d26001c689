"""Restoring the newest checkpoint of a directory that can be read; damaged ones moved aside.

A ``tf.train.CheckpointManager`` directory lists its checkpoints, oldest to newest, in its
``checkpoint`` state file. ``restore_newest`` tries them newest first. One that cannot be
restored — an index that is not an sstable, a data shard missing, truncated or failing its
checksum, tensors of another model — is skipped with one warning line naming its file and the
reason; its files are moved into ``<directory>/damaged/`` (never deleted, so that a person can
look) and the state file is rewritten without it, so no manager lists it again. The newest that
restores is used. A state file that cannot be read (TensorFlow would ignore it, and the run
would start over without a word) is moved aside too, and the checkpoints are then found from
their index files, highest number first. Only the process that owns the directory moves files
(``move_aside``); the others only skip.

Writes killed midway need no repair: ``Checkpoint.save`` writes the data into
``<prefix>_temp/``, moves it into place and writes the index, and only then does the manager
record the checkpoint in the state file, which it replaces atomically (a temporary file renamed
over it). A kill at any moment leaves the state naming the previous, complete checkpoint.
``remove_unfinished_writes`` deletes what such a kill leaves behind (``<prefix>_temp/``
directories, temporary state files), which TensorFlow documents as safe to remove.
"""

import contextlib
import glob
import logging
import os
import shutil
import sys

import tensorflow as tf

from tfnet import errors

DAMAGED_DIR = "damaged"
STATE_FILE = "checkpoint"  # The manager's state file (tf.train.get_checkpoint_state).

# What reading a damaged file raises: tf.errors for an unreadable or missing file or a failed
# checksum, IndexError for a truncated data file ("Read less bytes than requested").
FILE_ERRORS = (tf.errors.OpError, IndexError)
# What restoring an intact checkpoint of another model raises: ValueError for a tensor of
# another shape, AssertionError for objects of this model that the checkpoint lacks, tf.errors
# for one of another dtype. Anything else is a bug, and must not move files.
MODEL_ERRORS = (ValueError, AssertionError, tf.errors.OpError)


class NoReadableCheckpointError(errors.TfnetError, RuntimeError):
    """A directory lists checkpoints, and none of them can be restored."""


def restore_newest(directory, checkpoint, partial=False, move_aside=True, advice="", warn=None):
    """Restores into ``checkpoint`` the newest checkpoint in ``directory`` that fits it.

    Args:
      directory: a ``tf.train.CheckpointManager`` directory.
      checkpoint: the ``tf.train.Checkpoint`` to restore. A checkpoint fits when its files are
        intact and every object of ``checkpoint`` gets a value from it
        (``assert_existing_objects_matched``).
      partial: whether values of the checkpoint that ``checkpoint`` has no object for are
        expected (``expect_partial``: no warning about them).
      move_aside: whether damaged checkpoints and an unreadable state file are moved into
        ``<directory>/damaged/`` and the state file rewritten (True on the process that owns
        the directory); else they are only skipped.
      advice: what to do when none can be restored, the end of the error's message.
      warn: ``warn(line)`` for each damaged file; default: "warning: <line>" on stderr.

    Returns:
      The restored checkpoint's prefix, or None when the directory lists none.

    Raises:
      NoReadableCheckpointError: checkpoints are listed and none can be restored; with
        ``move_aside``, all of them (and the state file) are in ``damaged/`` by then, so the
        directory lists none.
    """
    # Made now: made by a restore that then fails, it would be left a deferred restoration from
    # that checkpoint, which the next restore would run, and fail with.
    checkpoint.save_counter  # noqa: B018
    warn = warn or _print_warning
    listed, timestamps, preserved, state_lost = _listed_checkpoints(directory, move_aside, warn)
    for index in range(len(listed) - 1, -1, -1):
        prefix = listed[index]
        reason = _restore_problem(checkpoint, prefix, partial)
        if reason is None:
            if move_aside and (state_lost or index < len(listed) - 1):
                _write_state(directory, listed[:index + 1], timestamps, preserved)
            return prefix
        where = _move_aside(directory, _files_of(prefix)) if move_aside else None
        moved = f" Moved its files to {where}." if where else ""
        warn(f"checkpoint {prefix} skipped: {reason}.{moved}")
    if not listed:
        return None
    if move_aside:
        _move_aside(directory, [os.path.join(directory, STATE_FILE)])
    moved = f", and moved to {os.path.join(directory, DAMAGED_DIR)}" if move_aside else ""
    raise NoReadableCheckpointError(
        f"{directory}: none of its checkpoints can be read, {len(listed)} tried (each named "
        f"above with its reason{moved}). {advice}".rstrip()
    )


def remove_unfinished_writes(directory):
    """Deletes what writes killed midway left in ``directory``: ``<prefix>_temp/`` directories
    and the state file's temporary copies (``checkpoint.tmp<hex>``). Call it only where no save
    is in progress (before training, holding the run's lock)."""
    for path in glob.glob(os.path.join(glob.escape(directory), "*_temp")):
        shutil.rmtree(path, ignore_errors=True)
    for path in glob.glob(os.path.join(glob.escape(directory), STATE_FILE + ".tmp*")):
        os.remove(path)


def _print_warning(line):
    print(f"warning: {line}", file=sys.stderr, flush=True)


def _listed_checkpoints(directory, move_aside, warn):
    """(prefixes oldest first, their timestamps or None, last preserved timestamp or None,
    whether the state file was unreadable and the prefixes come from the index files)."""
    path = os.path.join(directory, STATE_FILE)
    if not os.path.exists(path):
        return [], None, None, False
    try:
        with _quiet_tensorflow():  # it logs a parse error as two warnings, then returns None
            state = tf.train.get_checkpoint_state(directory)
        problem = None if state else "not a checkpoint state (CheckpointState text proto)"
    except (tf.errors.OpError, ValueError) as error:  # ValueError: empty, or no latest path
        state, problem = None, _one_line(error)
    if state is not None:
        timestamps = list(state.all_model_checkpoint_timestamps) or None
        return (list(state.all_model_checkpoint_paths), timestamps,
                state.last_preserved_timestamp, False)
    where = _move_aside(directory, [path]) if move_aside else None
    moved = f" Moved it to {where}." if where else ""
    warn(f"checkpoint state file {path} skipped: {problem}.{moved} Looking for checkpoints by "
         "their index files.")
    prefixes = [p[:-len(".index")]
                for p in glob.glob(os.path.join(glob.escape(directory), "*-*.index"))]
    numbered = [p for p in prefixes if p.rsplit("-", 1)[1].isdigit()]
    return sorted(numbered, key=lambda p: int(p.rsplit("-", 1)[1])), None, None, True


def _restore_problem(checkpoint, prefix, partial):
    """None when ``prefix`` is restored into ``checkpoint``, else the reason, in one line naming
    the file.

    Every tensor is read first, without touching the model: a damaged file is then never
    restored from in part. Only a checkpoint whose files are intact is restored.
    """
    problem = _file_problem(prefix)
    if problem:
        return problem
    try:
        status = checkpoint.restore(prefix)
        try:
            status.assert_existing_objects_matched()
        except AssertionError:
            status.expect_partial()  # else, collected, it warns of each value it left unused
            raise
        if partial:
            status.expect_partial()
    except MODEL_ERRORS as error:
        return f"it does not restore into this model ({_one_line(error)})"
    return None


def _file_problem(prefix):
    """Which file of ``prefix`` is missing or damaged, and how; None when every tensor reads."""
    name = os.path.basename(prefix)
    if not os.path.exists(prefix + ".index"):
        return f"{name}.index is missing"
    try:
        reader = tf.train.load_checkpoint(prefix)
    except FILE_ERRORS as error:
        return f"{name}.index cannot be read ({_one_line(error)})"
    data = sorted(glob.glob(glob.escape(prefix) + ".data-*"))
    shards = int(data[0].rsplit("-of-", 1)[1]) if data else 1
    expected = [f"{prefix}.data-{i:05d}-of-{shards:05d}" for i in range(shards)]
    missing = [os.path.basename(p) for p in expected if p not in data]
    if missing:
        return f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing"
    files = os.path.basename(data[0]) if len(data) == 1 else f"{name}.data-*"
    for key in sorted(reader.get_variable_to_shape_map()):
        try:
            reader.get_tensor(key)
        except FILE_ERRORS as error:
            return f"{files} cannot be read ({_one_line(error)}, reading {key})"
    return None


def _one_line(error, limit=160):
    """The first line of ``error``'s message, cut to ``limit`` characters."""
    lines = str(error).strip().splitlines()
    line = lines[0].rstrip(".") if lines else type(error).__name__
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _files_of(prefix):
    pattern = glob.escape(prefix)
    return sorted(glob.glob(pattern + ".index") + glob.glob(pattern + ".data-*"))


def _move_aside(directory, paths):
    """Moves ``paths`` into ``<directory>/damaged/`` (or ``damaged/<n>/``, the first where none
    of their names is taken); returns that directory, or None when there was nothing to move."""
    paths = [p for p in paths if os.path.exists(p)]
    if not paths:
        return None
    destination, n = os.path.join(directory, DAMAGED_DIR), 1
    while any(os.path.exists(os.path.join(destination, os.path.basename(p))) for p in paths):
        n += 1
        destination = os.path.join(directory, DAMAGED_DIR, str(n))
    os.makedirs(destination, exist_ok=True)
    for path in paths:
        os.replace(path, os.path.join(destination, os.path.basename(path)))
    return destination


def _write_state(directory, prefixes, timestamps, preserved):
    """Rewrites the state file to list ``prefixes`` (oldest first), as the manager writes it."""
    tf.__internal__.train.update_checkpoint_state(
        directory, model_checkpoint_path=prefixes[-1], all_model_checkpoint_paths=prefixes,
        all_model_checkpoint_timestamps=timestamps[:len(prefixes)] if timestamps else None,
        last_preserved_timestamp=preserved, save_relative_paths=True,
    )


@contextlib.contextmanager
def _quiet_tensorflow():
    """TensorFlow's Python warnings off (a parse error of the state file): the one line this
    module writes says what happened."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
