"""SavedModel export into ``<export_dir>/<name>/<version>/``, complete or absent.

The served model is the trained classifier followed by a softmax: its ``serving_default``
signature takes raw inputs (normalisation is inside the model) and returns class probabilities.
It is written with Keras 3's ``model.export`` (which keeps the input names that
``tf.saved_model.save`` loses) into a temporary directory beside the target, and renamed to the
next integer version only when complete: a rename within one file system is atomic, so a killed
export leaves at most a ``.tmp-*`` directory, never a version that loads half-written, and an
existing version is never overwritten.
"""

import os
import re
import shutil
import tempfile

import keras

_VERSION = re.compile(r"^[0-9]+$")


def versions(model_root):
    """The integer versions already exported under ``model_root`` (sorted)."""
    if not os.path.isdir(model_root):
        return []
    return sorted(int(name) for name in os.listdir(model_root) if _VERSION.match(name))


def serving_model(model):
    """The classifier with a softmax on its logits: raw inputs → class probabilities."""
    probabilities = keras.layers.Softmax(name="probabilities")(model.outputs[0])
    return keras.Model(model.inputs, probabilities, name=f"{model.name}_serving")


def export_model(model, export_dir, name):
    """Exports ``serving_model(model)`` as the next version of ``name``; returns its path."""
    model_root = os.path.join(export_dir, name)
    os.makedirs(model_root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".tmp-export-", dir=model_root)
    try:
        serving_model(model).export(os.path.join(staging, "model"), format="tf_saved_model", verbose=False)
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
