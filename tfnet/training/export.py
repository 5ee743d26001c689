"""SavedModel export into ``<export_dir>/<name>/<version>/``, complete or absent.

The served model is the trained classifier followed by a softmax: its ``serving_default``
signature takes raw inputs of the data's shape (normalisation is inside the model) and returns class probabilities;
a model of images also takes uint8 pixels (``serving_uint8``). It is written with Keras 3's
``keras.export.ExportArchive`` (what ``model.export`` uses) into a temporary directory beside the
target, and renamed to the
next integer version only when complete: a rename within one file system is atomic, so a killed
export leaves at most its staging directory, never a version that loads half-written, and an
existing version is never overwritten.

The staging directory, ``.tmp-export-<host>-<pid>-<random>``, names the process writing it, so
each export first deletes the staging directories of exports killed on this machine (their
process is gone) and leaves those of live exports, and of other machines, alone.
"""

import os
import re
import shutil
import socket
import tempfile

import keras

_VERSION = re.compile(r"^[0-9]+$")
_STAGING_PREFIX = ".tmp-export-"
# mkdtemp's random suffix has no "-", and the pid is the last number before it.
_STAGING = re.compile(r"^\.tmp-export-(?P<host>.+)-(?P<pid>[0-9]+)-[^-]+$")


def versions(model_root):
    """The integer versions already exported under ``model_root`` (sorted)."""
    if not os.path.isdir(model_root):
        return []
    return sorted(int(name) for name in os.listdir(model_root) if _VERSION.match(name))


def write_saved_model(model, path, input_shape):
    """Writes the classifier ``model`` (raw inputs → logits) as a SavedModel at ``path``.

    Its ``serving_default`` signature takes ``features``, a batch of raw float32 examples of
    ``input_shape`` (pixels in [0, 255], not scaled to [0, 1]: the normalisation is inside the
    model), and returns ``output_0``, the class probabilities (a softmax of the logits). A model
    of images (``input_shape`` (height, width, channels)) also gets ``serving_uint8``, which
    takes the pixels as uint8, what images are stored as, and returns the same probabilities.
    Any Keras model works: Sequential, functional or subclassed.
    """
    import tensorflow as tf

    def probabilities(features):
        return tf.nn.softmax(model(features, training=False), axis=-1)

    shape = (None, *input_shape)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", probabilities,
                         input_signature=[tf.TensorSpec(shape, tf.float32, name="features")])
    if len(input_shape) == 3:
        archive.add_endpoint(
            "serving_uint8", lambda features: probabilities(tf.cast(features, tf.float32)),
            input_signature=[tf.TensorSpec(shape, tf.uint8, name="features")])
    archive.write_out(path, verbose=False)


def _running(pid):
    try:
        os.kill(pid, 0)  # Signal 0: only asks whether the process exists.
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # It exists, under another user.
    return True


def remove_stale_staging(model_root):
    """Deletes the staging directories under ``model_root`` of exports killed on this machine.

    Only directories named like ``.tmp-export-<host>-<pid>-<random>`` with this machine's host
    name and a process id that no longer runs are deleted. Returns their names.
    """
    if not os.path.isdir(model_root):
        return []
    host, removed = socket.gethostname(), []
    for name in sorted(os.listdir(model_root)):
        match = _STAGING.match(name)
        if match and match["host"] == host and not _running(int(match["pid"])):
            shutil.rmtree(os.path.join(model_root, name), ignore_errors=True)
            removed.append(name)
    return removed


def export_model(model, export_dir, name, input_shape):
    """Exports the model (``write_saved_model``) as the next version of ``name``; returns its path.

    Killed exports' staging directories are deleted first (``remove_stale_staging``).
    """
    model_root = os.path.join(export_dir, name)
    os.makedirs(model_root, exist_ok=True)
    remove_stale_staging(model_root)
    prefix = f"{_STAGING_PREFIX}{socket.gethostname()}-{os.getpid()}-"
    staging = tempfile.mkdtemp(prefix=prefix, dir=model_root)
    try:
        write_saved_model(model, os.path.join(staging, "model"), input_shape)
        while True:
            target = os.path.join(model_root, str((versions(model_root) or [0])[-1] + 1))
            try:
                # os.rename onto a missing path is atomic; a racing export that took this
                # version first makes it fail, and we take the next one.
                os.rename(os.path.join(staging, "model"), target)
                return target
            except OSError:
                if not os.path.exists(target):
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
