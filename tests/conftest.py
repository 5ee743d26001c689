"""Test-session set-up shared by every test file.

The CPU is split into two logical devices before TensorFlow initialises, so that tests can run
`tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])` on this two-core, GPU-less machine.
Nothing here changes numerics for single-device code: ops still run on /cpu:0 by default.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import pytest
import tensorflow as tf

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_TFDS = os.path.join(os.path.dirname(REPO_ROOT), "shared", "tfds")


@pytest.fixture
def float64():
    """Runs a test with Keras' float type and dtype policy set to float64, restored afterwards.

    Both are needed: Keras caches its global dtype policy once a layer has been built, after
    which ``set_floatx`` alone no longer reaches new layers.
    """
    previous_floatx, previous_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(previous_floatx)
    keras.config.set_dtype_policy(previous_policy)


@pytest.fixture(scope="session")
def two_cpu_strategy():
    """A MirroredStrategy over the two logical CPU devices, one per test session.

    One instance only: every MirroredStrategy numbers its collective ops from the same key, so a
    second instance in the same process would reuse keys with other shapes and abort.
    """
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def repo_root():
    return REPO_ROOT


@pytest.fixture
def shared_tfds():
    """Path of the offline mnist_t10k TFDS data; skips the test where ../shared is absent."""
    if not os.path.isdir(os.path.join(SHARED_TFDS, "mnist_t10k")):
        pytest.skip(f"mnist_t10k not found under {SHARED_TFDS} (../shared is absent)")
    return SHARED_TFDS


# The tests that take a minute or so (each page's commands), started first: pytest-xdist hands
# tests to its workers in collection order, so one collected last would run alone after the
# others finished.
LONGEST = ("tests/test_readme.py::test_every_command_of_the_page_works_in_the_order_written",)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: not item.nodeid.startswith(LONGEST))
