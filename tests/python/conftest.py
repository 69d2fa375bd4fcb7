"""Fixtures for the nats-py tests: a broker on a free loopback port.

The broker is natsu (`NATSU_BIN`, default `target/release/natsu` in the repository), or the
reference `nats-server` when `NATSU_TEST_TARGET=reference`. It is killed by PID at teardown.
"""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _broker_binary():
    if os.environ.get("NATSU_TEST_TARGET") == "reference":
        path = shutil.which("nats-server")
        if path is None:
            pytest.fail("NATSU_TEST_TARGET=reference but nats-server is not on PATH")
        return path
    path = pathlib.Path(os.environ.get("NATSU_BIN", "target/release/natsu"))
    if not path.is_absolute():
        path = REPO / path
    if not path.is_file():
        pytest.fail(f"natsu binary not found at {path}: build it or set NATSU_BIN")
    return str(path)


_next_port = [0]


def _free_port():
    """A loopback port that was free a moment ago, below the kernel's ephemeral range.

    Not the kernel's pick (bind to 0): that comes from the range every outgoing connection of
    every test running in parallel draws its local port from, so a client elsewhere could take
    it before the broker binds it. The start differs per process; ports are then taken in turn.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    low, high = 10000, min(max(ephemeral_low, 12000), 65000)
    span = high - low
    start = (os.getpid() * 2654435761) % span
    for _ in range(span):
        port = low + (start + _next_port[0]) % span
        _next_port[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port below {high}")


def _wait_listening(proc, port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"broker exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.02)  # waiting for the process to bind, not for protocol state
    pytest.fail(f"broker did not listen on {port} within {timeout}s")


@pytest.fixture
def server_url():
    """Start a broker for one test and yield its nats:// URL."""
    port = _free_port()
    log = None if os.environ.get("NATSU_TEST_LOG") else subprocess.DEVNULL
    proc = subprocess.Popen(
        [_broker_binary(), "-a", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    try:
        _wait_listening(proc, port)
        yield f"nats://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture
def start_broker(tmp_path):
    """A factory for brokers with arguments and an optional config file.

    `start_broker(args=(), conf=None)` writes `conf` (when given) to a file in `tmp_path`,
    starts the broker with `-a 127.0.0.1 -p PORT [-c FILE] ARGS`, waits until it listens and
    returns the port. Flags on the command line win over the file for both servers. The
    broker's output goes to a log file in `tmp_path` (or to the terminal with
    `NATSU_TEST_LOG`) and is shown if it fails to start. Every broker is killed by PID at
    teardown.
    """
    procs = []

    def start(args=(), conf=None):
        n = len(procs)
        port = _free_port()
        cmd = [_broker_binary(), "-a", "127.0.0.1", "-p", str(port)]
        if conf is not None:
            conf_path = tmp_path / f"broker-{n}.conf"
            conf_path.write_text(conf)
            cmd += ["-c", str(conf_path)]
        cmd += list(args)
        log_path = tmp_path / f"broker-{n}.log"
        if os.environ.get("NATSU_TEST_LOG"):
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        else:
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        procs.append(proc)
        try:
            _wait_listening(proc, port)
        except pytest.fail.Exception as e:
            out = log_path.read_text(errors="replace") if log_path.exists() else ""
            pytest.fail(f"{e}\ncommand: {cmd}\noutput:\n{out}")
        return port

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class Node:
    """A broker started by `start_node`: its client `port`, its nats:// `url`, `kill()`."""

    def __init__(self, proc, port):
        self.proc = proc
        self.port = port
        self.url = f"nats://127.0.0.1:{port}"

    def kill(self):
        """SIGKILL by PID (no goodbye to clients or routes) and reap."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def start_node(tmp_path):
    """A factory for brokers a test may kill, e.g. the nodes of a cluster.

    `start_node(args=())` starts the broker with `-a 127.0.0.1 -p PORT ARGS` (PORT free),
    waits until it listens and returns a `Node`. Output goes to a log file in `tmp_path`
    (or to the terminal with `NATSU_TEST_LOG`), shown if the broker fails to start. Every
    node still running is killed by PID at teardown.
    """
    nodes = []

    def start(args=()):
        port = _free_port()
        cmd = [_broker_binary(), "-a", "127.0.0.1", "-p", str(port), *args]
        log_path = tmp_path / f"node-{len(nodes)}.log"
        with open(log_path, "wb") as log:
            out = None if os.environ.get("NATSU_TEST_LOG") else log
            node = Node(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out), port)
        nodes.append(node)
        try:
            _wait_listening(node.proc, port)
        except pytest.fail.Exception as e:
            pytest.fail(f"{e}\ncommand: {cmd}\noutput:\n{log_path.read_text(errors='replace')}")
        return node

    yield start
    for node in nodes:
        node.kill()
