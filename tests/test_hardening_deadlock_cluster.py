"""Crossing call chains across two real cluster processes fail at once (issue 13, item 13).

Each daphne process runs this module as its ASGI application (``application`` below), so
both register ``CrossingPeer``. An object lives in the first host that needs it: "a" in
the first process, "b" in the second, and their calls to each other cross the wire.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.settings")
django.setup()

import pytest  # noqa: E402

from durable_objects import DeadlockError, DurableObject  # noqa: E402
from tests.support.servers import REPO, free_port, start_daphne, stop  # noqa: E402


class CrossingPeer(DurableObject):
    """Calls another peer after a pause, inside its own event."""

    class Meta:
        hibernate_after = 3600

    async def call_after(self, other, pause):
        import asyncio

        await asyncio.sleep(pause)
        try:
            return await CrossingPeer.objects.get_by_name(other).touch(self.ctx.id.name)
        except DeadlockError as exc:
            return f"deadlock: {exc}"

    def touch(self, caller):
        return f"touched by {caller} in {os.getpid()}"


async def application(scope, receive, send):
    """/touch/<name>/ and /cross/<name>/<other>/<pause>/, answered as JSON."""
    if scope["type"] != "http":
        return
    parts = scope["path"].strip("/").split("/")
    try:
        if parts[0] == "touch":
            result = await CrossingPeer.objects.get_by_name(parts[1]).touch("http")
        else:
            peer = CrossingPeer.objects.get_by_name(parts[1])
            result = await peer.call_after(parts[2], float(parts[3]))
        status, body = 200, {"result": result, "pid": os.getpid()}
    except Exception as exc:  # the test shows what went wrong
        status, body = 500, {"error": f"{type(exc).__name__}: {exc}"}
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


@pytest.fixture
def two_hosts(tmp_path, redis_url):
    """Two daphne processes hosting objects, sharing one Redis and one storage root."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.set("do:boot", repr(time.time() - 3600))  # a Redis up for an hour, not a restart
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "tests.support.cluster_settings",
        "DO_TEST_REDIS_URL": redis_url,
        "DO_TEST_DB": str(tmp_path / "db.sqlite3"),
        "DO_TEST_STORAGE_ROOT": str(tmp_path / "objects"),
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)
    processes, bases = [], []
    for _ in range(2):
        port = free_port()
        processes.append(start_daphne(f"{__name__}:application", port, env))
        bases.append(f"http://127.0.0.1:{port}")
    yield bases
    for process in processes:
        stop(process)


def get(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def place(bases):
    """Wake "a" in the first process and "b" in the second; return their pids."""
    a, b = get(f"{bases[0]}/touch/a/"), get(f"{bases[1]}/touch/b/")
    assert a["pid"] != b["pid"]
    return a, b


@pytest.mark.parametrize("pauses", [(0.2, 1.0), (0.5, 0.5)], ids=["staggered", "at-once"])
def test_crossing_calls_between_two_processes_fail_one_at_once(two_hosts, pauses):
    first, second = two_hosts
    a, b = place(two_hosts)
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        from_a = pool.submit(get, f"{first}/cross/a/b/{pauses[0]}/")
        from_b = pool.submit(get, f"{second}/cross/b/a/{pauses[1]}/")
        results = [from_a.result(), from_b.result()]
    elapsed = time.monotonic() - started
    assert all("result" in r for r in results), results
    texts = [r["result"] for r in results]
    deadlocks = [t for t in texts if t.startswith("deadlock")]
    assert len(deadlocks) == 1, texts  # one call refused; the other went through
    assert "tests.CrossingPeer" in deadlocks[0]
    touched = [t for t in texts if t.startswith("touched by")]
    # The call that went through ran in the other process: the calls crossed the wire.
    assert touched in ([f"touched by a in {b['pid']}"], [f"touched by b in {a['pid']}"]), texts
    assert elapsed < 8, elapsed  # CALL_TIMEOUT is 10 s in the cluster settings
