"""A Ray cluster on localhost (a head and a second node, 1 CPU each), started with `ray start` and
stopped by process group: only the processes it started, never by name. The tests and the
trials benchmark use it."""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time

RAY = os.path.join(os.path.dirname(sys.executable), "ray")
# Nodes are declared dead after about 3 × 0.5 s without a health check answer (default: 15 s).
_SYSTEM_CONFIG = {"health_check_period_ms": 500, "health_check_timeout_ms": 500,
                  "health_check_failure_threshold": 3, "health_check_initial_delay_ms": 0}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalCluster:
    """The head (1 CPU) and a second node (1 CPU) on 127.0.0.1, each `ray start`ed in a session
    of its own (its processes, the workers included, are that session's), in ``root`` (Ray's temporary directory: keep it short, Ray's socket paths must
    fit in 107 bytes). Token authentication is on, with a token of the cluster's own:
    ``auth_env`` is what a driver's environment needs to join it at ``address``."""

    def __init__(self, root):
        self.root = root
        token = os.path.join(root, "token")
        with open(token, "w") as f:
            f.write(secrets.token_hex(32))
        self.auth_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": token}
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._sessions = {}  # node name -> session id (the `ray start` process's pid)

    def start_head(self):
        self._start("head", "--head", f"--port={self.port}", f"--temp-dir={self.root}",
                    f"--ray-client-server-port={free_port()}", "--include-dashboard=false",
                    f"--system-config={json.dumps(_SYSTEM_CONFIG)}")

    def start_second(self):
        self._start("second", f"--address={self.address}")

    def ensure_second(self):
        """Starts the second node again if a test killed it."""
        if "second" not in self._sessions:
            self.start_second()

    def _start(self, name, *args):
        log_path = os.path.join(self.root, f"{name}.log")
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [RAY, "start", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                 "--object-store-memory=80000000", "--disable-usage-stats", *args],
                env=dict(os.environ, **self.auth_env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._sessions[name] = process.pid
        if process.wait(timeout=180) != 0:
            raise RuntimeError(f"ray start ({name}) failed:\n{open(log_path).read()[-3000:]}")

    def runs(self, name, pid):
        """Whether process ``pid`` belongs to node ``name`` (its session)."""
        try:
            return os.getsid(pid) == self._sessions.get(name)
        except ProcessLookupError:
            return False

    def kill(self, name):
        """SIGKILLs every process of node ``name`` (of its session: Ray gives each worker a
        process group of its own) and waits until none runs."""
        session = self._sessions.pop(name)
        deadline = time.monotonic() + 30
        while members := _running_members(session):
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {name} (session {session}) survived SIGKILL: {members}")
            time.sleep(0.05)

    def stop(self):
        for name in list(self._sessions):
            self.kill(name)


def _running_members(session):
    """Processes of session ``session`` that have not exited (zombies excluded; Linux)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, sid = fields[0], int(fields[3])
        if sid == session and state != "Z":
            members.append(int(entry))
    return members
