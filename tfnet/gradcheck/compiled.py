"""The checker's compiled functions: traced anew by every check, without TensorFlow's warning.

Each check builds its own float twin and traces its own functions of it, so a user who checks a
model after every epoch traces them once per check, on purpose. TensorFlow counts retracings by
the Python function's code and, from the sixth, logs "triggered tf.function retracing ... define
your @tf.function outside of the loop", advice the user cannot follow. The functions here opt out
of that one warning, as TensorFlow's own restored SavedModel functions do
(``function_deserialization``: ``_omit_frequent_tracing_warning = True``); nothing else changes.
"""

import tensorflow as tf


def traced_per_check(fn):
    """``tf.function(fn, autograph=False)``, without the frequent-retracing warning."""
    compiled = tf.function(fn, autograph=False)
    compiled._omit_frequent_tracing_warning = True  # no public switch (TF 2.21)
    return compiled
