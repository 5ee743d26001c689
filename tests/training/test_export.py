"""The SavedModel export is complete or absent: a failure half-way leaves no version and nothing
that loads as a model; the staging directories of killed exports are cleaned up, live ones not."""

import os
import socket
import subprocess
import sys
import tempfile

import keras
import pytest
import tensorflow as tf

from tfnet.training import export


def _model():
    inputs = keras.Input((2,), name="features")
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))


def _loadable(root):
    return [d for d, _, _ in os.walk(root) if tf.saved_model.contains_saved_model(d)]


def test_an_export_that_fails_half_way_leaves_no_version_and_nothing_that_loads(tmp_path, monkeypatch):
    archive_class = type(keras.export.ExportArchive())  # the backend's subclass
    real_write_out = archive_class.write_out

    def write_out_then_fail(self, filepath, *args, **kwargs):
        real_write_out(self, filepath, *args, **kwargs)  # a complete SavedModel where it writes,
        with open(os.path.join(filepath, "saved_model.pb"), "r+b") as f:
            f.truncate(100)  # then cut short, as a full disk would
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(archive_class, "write_out", write_out_then_fail)
    with pytest.raises(OSError, match="No space left"):
        export.export_model(_model(), str(tmp_path), "broken", (2,))
    root = tmp_path / "broken"
    assert export.versions(str(root)) == []
    assert os.listdir(root) == []  # the staging directory went with the failure
    assert _loadable(tmp_path) == []


def test_the_next_export_removes_killed_exports_staging_and_leaves_live_ones(tmp_path):
    root = tmp_path / "model"
    root.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    host = socket.gethostname()
    killed = root / f".tmp-export-{host}-{int(dead.stdout)}-abc123"
    (killed / "model").mkdir(parents=True)
    live = tempfile.mkdtemp(prefix=f".tmp-export-{host}-{os.getpid()}-", dir=root)
    other_host = root / f".tmp-export-elsewhere-{int(dead.stdout)}-def456"
    other_host.mkdir()
    path = export.export_model(_model(), str(tmp_path), "model", (2,))
    assert path == str(root / "1") and _loadable(root) == [path]
    assert sorted(os.listdir(root)) == sorted(["1", os.path.basename(live), other_host.name])


def test_exports_take_the_next_version_and_never_overwrite(tmp_path):
    first = export.export_model(_model(), str(tmp_path), "model", (2,))
    files = sorted(os.listdir(first))
    second = export.export_model(_model(), str(tmp_path), "model", (2,))
    assert second.endswith(os.path.join("model", "2"))
    assert export.versions(str(tmp_path / "model")) == [1, 2]
    assert sorted(os.listdir(first)) == files
