"""The demo site served by daphne through ``manage.py runserver``, as the README runs it."""

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def demo_server(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo_site.settings",
        "DEMO_VAR_DIR": str(tmp_path / "var"),
        "PYTHONPATH": str(REPO),
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO, env=env, check=True
    )
    port = free_port()

    def start():
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return process
            except OSError:
                time.sleep(0.1)
        process.kill()
        raise RuntimeError("the demo server did not start")

    servers = []

    def launch():
        servers.append(start())
        return f"http://127.0.0.1:{port}", servers[-1]

    yield launch
    for process in servers:
        process.kill()
        process.wait()


def post_increment(opener, url):
    page = opener.open(url).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode({"csrfmiddlewaretoken": token}).encode()
    request = urllib.request.Request(url, data=data, headers={"Referer": url})
    return opener.open(request).read().decode()


def shown_value(page):
    return int(re.search(r'<p id="value">(\d+)</p>', page).group(1))


def test_demo_counter_counts_and_survives_a_restart(demo_server):
    base, server = demo_server()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    assert "django-durable-objects" in opener.open(base + "/").read().decode()
    url = base + "/counter/home/"
    assert shown_value(opener.open(url).read().decode()) == 0
    assert shown_value(post_increment(opener, url)) == 1
    assert shown_value(post_increment(opener, url)) == 2
    server.terminate()
    server.wait(timeout=10)
    base, _ = demo_server()
    page = opener.open(base + "/counter/home/").read().decode()
    assert shown_value(page) == 2
    assert "a5c9922c0d32b69a8d8a58ebd55a8a14037b10e9fd81678f274df0782f94bfce" in page


async def test_demo_chat_through_runserver(demo_server):
    """The README's command serves the chat room's WebSockets (daphne's runserver)."""
    import json

    import websockets

    base, _ = demo_server()
    page = urllib.request.urlopen(base + "/chat/lobby/").read().decode()
    assert "Chat room" in page
    url = base.replace("http", "ws") + "/ws/chat/lobby/"
    origin = {"Origin": base}
    expected = {"user": "ann", "text": "<script>alert(1)</script>"}
    ann_url, bob_url = url + "?user=ann", url + "?user=bob"
    async with (
        websockets.connect(ann_url, additional_headers=origin) as ann,
        websockets.connect(bob_url, additional_headers=origin) as bob,
    ):
        await ann.send("<script>alert(1)</script>")
        assert json.loads(await asyncio.wait_for(bob.recv(), 5)) == expected
        assert json.loads(await asyncio.wait_for(ann.recv(), 5)) == expected
    async with websockets.connect(url + "?user=cat", additional_headers=origin) as cat:
        assert json.loads(await asyncio.wait_for(cat.recv(), 5)) == expected  # history
    # A page of another origin is refused by AllowedHostsOriginValidator.
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(url, additional_headers={"Origin": "http://evil.example"})


async def test_demo_cluster_chat_across_its_two_daphne_processes(tmp_path, redis_url):
    """./scripts/cluster's launcher: the chat works with clients on both daphne processes."""
    import json
    import signal
    import subprocess

    import redis
    import websockets

    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.set("do:boot", repr(time.time() - 3600))
    ports = [free_port(), free_port()]
    env = {**os.environ, "REDIS_URL": redis_url, "DEMO_VAR_DIR": str(tmp_path / "var")}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "demo_site.cluster", "--ports", *map(str, ports)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = ""
        while "The demo cluster is up" not in line:  # runobjects prints a line too
            line = await asyncio.to_thread(launcher.stdout.readline)
            assert line, "the launcher exited"
        origin = {"Origin": f"http://127.0.0.1:{ports[0]}"}
        ann_url = f"ws://127.0.0.1:{ports[0]}/ws/chat/cl/?user=ann"
        bob_url = f"ws://127.0.0.1:{ports[1]}/ws/chat/cl/?user=bob"
        async with (
            websockets.connect(ann_url, additional_headers=origin) as ann,
            websockets.connect(bob_url, additional_headers=origin) as bob,
        ):
            await ann.send("hello from 8001")
            expected = {"user": "ann", "text": "hello from 8001"}
            assert json.loads(await asyncio.wait_for(bob.recv(), 10)) == expected
            assert json.loads(await asyncio.wait_for(ann.recv(), 10)) == expected
    finally:
        launcher.send_signal(signal.SIGINT)
        launcher.wait(20)
