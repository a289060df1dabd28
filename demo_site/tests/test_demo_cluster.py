"""The demo site in the cluster shape (``./scripts/cluster``): the same demos, unchanged.

One cluster for the module: ``python -m demo_site.cluster`` (two daphne processes, a
runobjects host, an rqworker) on the test run's Redis.
"""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from demo_site.tests.demo_server import REPO, Booker, free_port, recv_json


@pytest.fixture(scope="module")
def cluster_ports(tmp_path_factory, redis_url):
    """The two daphne ports of a running demo cluster."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.set("do:boot", repr(time.time() - 3600))  # no grace: no earlier leases
    ports = [free_port(), free_port()]
    var = tmp_path_factory.mktemp("demo-cluster") / "var"
    env = {**os.environ, "REDIS_URL": redis_url, "DEMO_VAR_DIR": str(var)}
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
            line = launcher.stdout.readline()
            assert line, "the launcher exited"
        yield ports
    finally:
        launcher.send_signal(signal.SIGINT)
        launcher.wait(20)


async def test_demo_cluster_runs_the_demos_across_its_two_daphne_processes(cluster_ports):
    """Clients on both daphne processes share each object."""
    import websockets

    ports = cluster_ports
    origin = {"Origin": f"http://127.0.0.1:{ports[0]}"}
    ann_url = f"ws://127.0.0.1:{ports[0]}/ws/chat/cl/?user=ann"
    bob_url = f"ws://127.0.0.1:{ports[1]}/ws/chat/cl/?user=bob"
    async with (
        websockets.connect(ann_url, additional_headers=origin) as ann,
        websockets.connect(bob_url, additional_headers=origin) as bob,
    ):
        await recv_json(ann, 10)
        await recv_json(bob, 10)
        await ann.send(json.dumps({"type": "message", "text": "hello from 8001"}))
        assert (await recv_json(bob, 10))["text"] == "hello from 8001"
        assert (await recv_json(ann, 10))["text"] == "hello from 8001"
    board = [f"ws://127.0.0.1:{port}/ws/board/cl/" for port in ports]
    async with (
        websockets.connect(board[0], additional_headers=origin) as one,
        websockets.connect(board[1], additional_headers=origin) as two,
    ):
        await recv_json(one, 10)
        await recv_json(two, 10)
        stroke = {"type": "stroke", "colour": "#0b63ce", "width": 3, "points": [[1, 2]]}
        await one.send(json.dumps(stroke))
        assert (await recv_json(two, 10))["points"] == [[1, 2]]
    # The trial's alarm is an RQ job of the launcher's rqworker; its broadcast reaches
    # the page's socket on the other daphne process.
    trial_url = f"ws://127.0.0.1:{ports[1]}/ws/trial/cl/"
    async with websockets.connect(trial_url, additional_headers=origin) as trial:
        assert (await recv_json(trial, 10))["plan"] == "none"
        await trial.send(json.dumps({"type": "start", "seconds": 3}))
        assert (await recv_json(trial, 10))["plan"] == "trial"
        # Half-way, the reminder schedule (issue 16) publishes the state, still "trial";
        # then the alarm expires it.
        plans = [(await recv_json(trial, 30))["plan"]]
        while plans[-1] == "trial" and len(plans) < 5:
            plans.append((await recv_json(trial, 30))["plan"])
        assert plans[-1] == "expired", plans
    # Two bookers of one seat, one on each daphne process: one gets it.
    bookers = [Booker(f"http://127.0.0.1:{port}", "CL-1") for port in ports]
    results = await asyncio.gather(
        *(asyncio.to_thread(booker.book, "4D", f"P{n}") for n, booker in enumerate(bookers))
    )
    assert sorted(status for status, _ in results) == [200, 409]
    # Every page is served by either process.
    for path in ("/", "/chat/cl/", "/board/cl/", "/poll/cl/", "/flights/CL-1/"):
        for port in ports:
            assert "demos" in await asyncio.to_thread(_read, f"http://127.0.0.1:{port}{path}")
    for path in ("/trial/cl/", "/ratelimit/", "/counter/cl/"):
        assert "demos" in await asyncio.to_thread(_read, f"http://127.0.0.1:{ports[1]}{path}")
    # The page's object panel reads the lease: the board is awake in some process.
    hex_id = await asyncio.to_thread(_board_id, ports[1])
    state_url = f"http://127.0.0.1:{ports[1]}/objects/board.DrawingBoard/{hex_id}/state/"
    state = json.loads(await asyncio.to_thread(_read, state_url))
    assert state["state"] == "active"
    assert state["where"].startswith("process ")


def _read(url):
    return urllib.request.urlopen(url, timeout=10).read().decode()


def _board_id(port):
    page = _read(f"http://127.0.0.1:{port}/board/cl/")
    return re.search(r'<code id="object-id" class="id">([0-9a-f]{64})</code>', page).group(1)


CLUSTER_PAGES = [
    "/",
    "/chat/browsers/",
    "/board/browsers/",
    "/poll/browsers/",
    "/flights/BR-1/",
    "/trial/browsers/",
    "/ratelimit/",
    "/counter/browsers/",
]


def test_demo_cluster_pages_work_in_a_browser_on_either_process(cluster_ports, browser_context):
    """Every page loads without a script error from each process; the chat spans both."""
    pages = []
    for n, path in enumerate(CLUSTER_PAGES):
        page = browser_context().new_page()
        page.goto(f"http://127.0.0.1:{cluster_ports[n % 2]}{path}")
        if page.locator("#connection").count():
            page.wait_for_selector("#connection.ok")
        pages.append(page)
    ann = pages[1]  # the chat, on the first process
    bob = browser_context().new_page()
    bob.goto(f"http://127.0.0.1:{cluster_ports[1]}/chat/browsers/")
    bob.wait_for_selector("#connection.ok")
    ann.fill("#text", "across processes")
    ann.press("#text", "Enter")
    bob.locator("#log li", has_text="across processes").wait_for()
    trial = pages[5]  # on the second process; its alarm is an RQ job
    trial.fill("#seconds", "3")
    trial.click("#start")
    trial.wait_for_function(
        "document.getElementById('plan').textContent === 'expired'", timeout=30_000
    )
    assert [page.js_errors for page in [*pages, bob]] == [[]] * (len(pages) + 1)
