"""Where trials run: Ray started on this machine for the run, or a running cluster joined.

``connect(cluster)`` is a context manager around ``ray.init``:

- ``ray_address`` None: Ray starts on this machine (every CPU) for the run and stops after it, so
  a search or a study needs no set-up;
- ``"auto"``: the cluster this machine belongs to (the last ``ray start`` run on it);
- ``"HOST:PORT"``: the cluster whose head was started with ``ray start --head --port=PORT``;
- in a process where Ray is already initialised (a notebook, a test session), that connection
  is used as it is and left open.

The workers import the tfnet this process imported: its package directory is shipped to every
node in the job's ``runtime_env`` (``py_modules``), so every trial runs the driver's code whether
or not tfnet is installed on the node (TensorFlow and Ray must be). Their output goes to Ray's
log files (``/tmp/ray/session_latest/logs``), not to this terminal.

Checked before any trial, each failure one ``ValueError`` naming the argument: the address is
reachable (at once, instead of Ray's retries), and ``cpus_per_trial`` fits on the cluster's
largest node (else Tune would wait for a node that cannot come).
"""

import contextlib
import dataclasses
import logging
import os
import re
import socket

from tfnet import config as config_lib

# How long a HOST:PORT may take to accept a connection before it counts as unreachable.
CONNECT_TIMEOUT_SECONDS = 5.0
_HOST_PORT = re.compile(r"^(?P<host>[^\s:]+):(?P<port>\d{1,5})$")


def _address(name, value):
    if value is not None and value != "auto" and not _HOST_PORT.match(value):
        config_lib.fail(name, "auto or HOST:PORT of a Ray head (e.g. 10.0.0.5:6379)", value)


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """Where and how wide trials run; each field is a flag of ``scripts/tune.py`` and
    ``scripts/study_optimizers.py``."""

    ray_address: str = config_lib.setting(
        None, "Ray cluster to run the trials on: auto (the cluster this machine joined with "
        "`ray start`) or HOST:PORT of its head (`ray start --head --port=PORT`). Default: Ray "
        "starts on this machine for the run and stops after it. On a cluster, the output "
        "directory must be on a file system every node mounts at the same path.", _address)
    cpus_per_trial: float = config_lib.setting(
        1.0, "CPUs each trial reserves on its node, > 0 (fractions allowed: 0.5 runs two trials "
        "per CPU).", config_lib.positive)
    max_concurrent_trials: int = config_lib.setting(
        0, "Trials running at once at most; 0: as many as the cluster's CPUs hold "
        "(CPUs / --cpus_per_trial).", config_lib.non_negative_int)
    trials_per_task: int = config_lib.setting(
        0, "Trials a Ray Tune trial (a task) trains one after another in its worker, > 1 to "
        "spread Tune's cost per trial (its scheduling, reports and end: about 0.2 s) "
        "over several short trials; 0: automatic, as many as keep eight tasks per concurrent "
        "slot, at most 8, shrinking to single trials as the trials run out (1 when a scheduler "
        "such as ASHA decides on each trial, and for searches of fewer than 16 trials per "
        "slot).", config_lib.non_negative_int)


def tfnet_package_dir():
    """The directory of the tfnet package this process imported (what the workers import)."""
    import tfnet

    return os.path.dirname(os.path.abspath(tfnet.__file__))


def init_options():
    """``ray.init``'s keyword arguments for a tfnet driver: this tfnet shipped to every node (the
    job's ``runtime_env``), TensorFlow's C++ INFO and WARNING lines off in the workers, no
    dashboard, and neither the workers' output nor Ray's INFO and WARNING lines on this terminal
    (they are in Ray's log files)."""
    env_vars = {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    return dict(runtime_env={"py_modules": [tfnet_package_dir()], "env_vars": env_vars},
                include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)


@contextlib.contextmanager
def connect(cluster):
    """Connects to (or starts) Ray as ``cluster`` says, checks it, and disconnects at the end.

    Raises:
      ValueError: ``cluster.ray_address`` is unreachable or names no Ray cluster, or
        ``cluster.cpus_per_trial`` exceeds the CPUs of every node. Ray is left as it was.
    """
    import ray

    config_lib.check_fields(cluster)
    if ray.is_initialized():
        check_fits(cluster)
        yield
        return
    if cluster.ray_address not in (None, "auto"):
        _check_reachable(cluster.ray_address)
    try:
        ray.init(address=cluster.ray_address, **init_options())
    except ConnectionError as error:
        reason = " ".join(str(error).split())
        config_lib.fail("ray_address", f"the address of a running Ray cluster ({reason})",
                        cluster.ray_address)
    try:
        check_fits(cluster)
        yield
    finally:
        ray.shutdown()


def _check_reachable(address):
    host, port = _HOST_PORT.match(address).group("host", "port")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_SECONDS).close()
    except OSError as error:
        config_lib.fail("ray_address", "the HOST:PORT of a reachable Ray head "
                        f"({error.strerror or error})", address)


def largest_node_cpus():
    """The CPUs of the cluster's largest live node (a trial runs on one node)."""
    import ray

    return max((node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node["Alive"]),
               default=0.0)


def concurrent_tasks(cluster):
    """How many tasks (Ray Tune trials) run at once: those of ``cluster.cpus_per_trial`` CPUs
    that fit on the cluster's live nodes, at most ``cluster.max_concurrent_trials`` (if set)."""
    import ray

    fit = sum(int(node["Resources"].get("CPU", 0.0) // cluster.cpus_per_trial)
              for node in ray.nodes() if node["Alive"])
    return max(1, min(cluster.max_concurrent_trials or fit, fit))


def check_fits(cluster):
    """Raises ValueError when a trial's ``cpus_per_trial`` fits on no node of the cluster."""
    cpus = largest_node_cpus()
    if cluster.cpus_per_trial > cpus:
        config_lib.fail("cpus_per_trial", f"at most the CPUs of the cluster's largest node "
                        f"({cpus:g})", cluster.cpus_per_trial)
