"""Real server processes for the tests: daphne, uvicorn or granian on a free loopback port."""

import os
import subprocess
from pathlib import Path

from durable_objects.testing import servers as devservers
from durable_objects.testing.servers import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]

__all__ = ["REPO", "SERVERS", "free_port", "start_daphne", "start_server", "stop", "wait_for_port"]

SERVERS = tuple(devservers.SERVERS)


def _log_file():
    """Where the servers' stderr goes: DO_TEST_LOGS (a path) when set, else nowhere."""
    path = os.environ.get("DO_TEST_LOGS")
    return open(path, "a") if path else subprocess.DEVNULL


def start_daphne(application, port, env, *options):
    """Start ``daphne [options] application`` on 127.0.0.1:port; wait until it listens."""
    return devservers.start_daphne(
        application,
        port,
        {**os.environ, "PYTHONPATH": str(REPO), **env},
        *options,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=_log_file(),
    )


def start_server(kind, application, port, env, *options):
    """Start the ASGI server kind ("daphne", "uvicorn", "granian"); wait until it listens."""
    return devservers.start_server(
        kind,
        application,
        port,
        {**os.environ, "PYTHONPATH": str(REPO), **env},
        *options,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=_log_file(),
    )


def stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
