"""The demo site as the README runs it: ``manage.py runserver`` (daphne's), a real process.

Each server has a DEMO_VAR_DIR of its own (its database and its objects' shards), so a
restart on the same directory finds everything the last one stored. Test modules import
the fixtures (``demo_server``, ``shared_demo_server``) under their function names::

    from demo_site.tests.demo_server import demo_server_fixture  # noqa: F401 (fixture)
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from durable_objects.testing.servers import free_port

REPO = Path(__file__).resolve().parents[2]


class DemoServer:
    """One demo site: start(), stop(), restart() on the same port and storage."""

    def __init__(self, var_dir, **environ):
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "demo_site.settings",
            "DEMO_VAR_DIR": str(var_dir),
            "PYTHONPATH": str(REPO),
            **environ,
        }
        self.env.pop("DEMO_CLUSTER_REDIS_URL", None)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None
        self.log = Path(var_dir).with_suffix(".log")
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=REPO,
            env=self.env,
            check=True,
        )

    def start(self):
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"The demo server exited; see {self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.process.kill()
        raise RuntimeError(f"The demo server did not start; see {self.log}")

    def stop(self):
        """Stop as Ctrl-C would (the host writes its catalog and gives its lock back)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self):
        """Stop as a crash would: SIGKILL, nothing written at exit."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self, crash=False):
        if crash:
            self.kill()
        else:
            self.stop()
        return self.start()


async def recv_json(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


class Booker:
    """A browser's cookies on one flight's page, without the browser."""

    def __init__(self, base, flight):
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.url = f"{base}/flights/{flight}/"
        self.opener.open(self.url).read()

    def book(self, seat, passenger):
        return self._post("book/", {"seat": seat, "passenger": passenger})

    def cancel(self, seat):
        return self._post("cancel/", {"seat": seat})

    def _post(self, action, data):
        """(status, JSON body) of a POST as the page's script makes it."""
        token = next(c.value for c in self.jar if c.name == "csrftoken")
        request = urllib.request.Request(
            self.url + action,
            data=json.dumps(data).encode(),
            headers={"X-CSRFToken": token, "Content-Type": "application/json"},
        )
        try:
            with self.opener.open(request, timeout=20) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


@pytest.fixture(name="demo_server")
def demo_server_fixture(tmp_path):
    """A demo site of this test's own, started."""
    server = DemoServer(tmp_path / "var").start()
    yield server
    server.stop()


@pytest.fixture(name="shared_demo_server", scope="module")
def shared_demo_server_fixture(tmp_path_factory):
    """One demo site for a module's tests that do not restart it."""
    server = DemoServer(tmp_path_factory.mktemp("demo") / "var").start()
    yield server
    server.stop()
