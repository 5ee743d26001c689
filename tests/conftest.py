"""Test-session set-up shared by every test file.

The CPU is split into two logical devices before TensorFlow initialises, so that tests can run
`tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])` on this two-core, GPU-less machine.
Nothing here changes numerics for single-device code: ops still run on /cpu:0 by default.
"""

import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import pytest
import tensorflow as tf

from helpers import write_mnist_standin

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


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory):
    """``../shared`` where this machine has mnist_t10k prepared there, else a directory with a
    small stand-in of it (``helpers.write_mnist_standin``: a fresh clone has no ../shared)."""
    if os.path.isdir(os.path.join(SHARED_TFDS, "mnist_t10k")):
        return os.path.dirname(SHARED_TFDS)
    shared = tmp_path_factory.mktemp("shared")
    write_mnist_standin(str(shared / "tfds"), num_train=1000, num_test=300)
    return str(shared)


@pytest.fixture(scope="session")
def shared_tfds(shared_dir):
    """The TFDS data directory holding mnist_t10k (the real one or its stand-in)."""
    return os.path.join(shared_dir, "tfds")


def _ray_temp_dir():
    # Short, under /tmp: Ray's socket paths (<temp dir>/session_<date>_<pid>/sockets/...) must fit
    # in 107 bytes, which pytest's tmp_path can exceed.
    return tempfile.mkdtemp(prefix="ray-", dir="/tmp")


@pytest.fixture(scope="session")
def ray_local():
    """Ray on this machine with one CPU (the suite runs on two cores, two pytest-xdist workers:
    one trial at a time each, each worker importing TensorFlow once per run of trials),
    started once per test session (each xdist worker its own) in a temporary directory of its
    own; tfnet.trials runs inside a Ray initialised like this one as it is."""
    import ray

    from tfnet.trials import cluster

    temp_dir = _ray_temp_dir()
    ray.init(num_cpus=1, _temp_dir=temp_dir, **cluster.init_options())
    yield
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_cluster():
    """A two-node Ray cluster on localhost (benchmarks/ray_cluster.py), for the drivers a test starts
    with ``ray_cluster.env`` and ``--ray_address=ray_cluster.address``; stopped at the end of the
    module (its own processes only)."""
    from benchmarks.ray_cluster import LocalCluster

    temp_dir = _ray_temp_dir()
    cluster = LocalCluster(temp_dir)
    try:
        cluster.start_head()
        cluster.start_second()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


# The tests that take a minute or so (each page's commands), started first: pytest-xdist hands
# tests to its workers in collection order, so one collected last would run alone after the
# others finished.
LONGEST = ("tests/test_readme.py::test_every_command_of_the_page_works_in_the_order_written",)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: not item.nodeid.startswith(LONGEST))
