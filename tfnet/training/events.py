"""Pruning TensorBoard event files back to a checkpoint, so resumed curves have no duplicates.

A run killed between two checkpoints has logged steps that the resumed run will log again.
TensorBoard's old answer was a SessionLog.START event that made readers purge orphaned steps;
TF2's ``tf.summary`` has none, so on resume the event files themselves are rewritten without
the events past the restored step. Event files are TFRecord files of ``Event`` protos, so the
kept records are copied verbatim.
"""

import os

import tensorflow as tf


def prune_events(log_dir, max_step):
    """Drops every event with ``step > max_step`` from the event files in ``log_dir``.

    Each file is rewritten to a temporary name and renamed over the original (atomic), so a
    kill during pruning leaves either the old or the pruned file. Returns the number of events
    dropped.
    """
    if not os.path.isdir(log_dir):
        return 0
    dropped = 0
    for name in sorted(os.listdir(log_dir)):
        if "tfevents" not in name or name.startswith("."):
            continue
        path = os.path.join(log_dir, name)
        kept, removed = [], 0
        for record in _records(path):
            if tf.compat.v1.Event.FromString(record).step > max_step:
                removed += 1
            else:
                kept.append(record)
        removed += _truncated(path, kept)
        if removed:
            staging = os.path.join(log_dir, f".pruning-{name}")
            with tf.io.TFRecordWriter(staging) as writer:
                for record in kept:
                    writer.write(record)
            os.replace(staging, path)
            dropped += removed
    return dropped


def _records(path):
    """The file's complete records; a record cut off by a kill mid-write ends the file."""
    iterator = iter(tf.data.TFRecordDataset(path))
    while True:
        try:
            yield next(iterator).numpy()
        except (StopIteration, tf.errors.DataLossError):
            return


def _truncated(path, kept):
    """1 when the file holds bytes beyond its complete records (a torn last record), else 0."""
    # Each TFRecord is: 8-byte length, 4-byte CRC, data, 4-byte CRC.
    return int(os.path.getsize(path) > sum(len(r) + 16 for r in kept))
