"""The demo site in the cluster shape (``./scripts/cluster``): the same demos, unchanged."""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from tests.demo_server import REPO, Booker, free_port, recv_json


async def test_demo_cluster_runs_the_demos_across_its_two_daphne_processes(tmp_path, redis_url):
    """./scripts/cluster's launcher: clients on both daphne processes share each object."""
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
            assert (await recv_json(trial, 30))["plan"] == "expired"
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
    finally:
        launcher.send_signal(signal.SIGINT)
        launcher.wait(20)


def _read(url):
    return urllib.request.urlopen(url, timeout=10).read().decode()


def _board_id(port):
    page = _read(f"http://127.0.0.1:{port}/board/cl/")
    return re.search(r'<code id="object-id" class="id">([0-9a-f]{64})</code>', page).group(1)
