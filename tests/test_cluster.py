"""The cluster: several processes, one live instance per ID (real Redis, real processes)."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.servers import REPO, free_port, start_daphne, stop


@pytest.fixture
def cluster(tmp_path, redis_url):
    """Start daphne processes and runobjects hosts sharing one Redis and one storage root."""
    yield from make_cluster(tmp_path, redis_url)


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own, which it may restart."""
    from durable_objects.testing.servers import RedisServer, redis_server_binary

    if redis_server_binary() is None:
        pytest.skip("no redis-server binary")
    server = RedisServer(tmp_path)
    yield server
    server.stop()


def make_cluster(tmp_path, redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.set("do:boot", repr(time.time() - 3600))  # a Redis up for an hour, not a restart
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.support.cluster_settings",
        "DO_TEST_REDIS_URL": redis_url,
        "DO_TEST_DB": str(tmp_path / "db.sqlite3"),
        "DO_TEST_STORAGE_ROOT": str(tmp_path / "objects"),
    }
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=full_env, check=True
    )
    processes = []

    class Cluster:
        redis = redis_url
        env = full_env

        def daphne(self, role="auto"):
            port = free_port()
            options = {**env, "DO_TEST_ROLE": role}
            processes.append(start_daphne("tests.support.asgi:application", port, options))
            return f"http://127.0.0.1:{port}", processes[-1]

        def runobjects(self):
            process = subprocess.Popen(
                [sys.executable, "manage.py", "runobjects"],
                cwd=REPO,
                env=full_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            processes.append(process)
            assert "Hosting objects" in process.stdout.readline()
            return process

    yield Cluster()
    for process in processes:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
        stop(process)


def get_json(url, timeout=15):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_500_increments_over_three_processes_count_500_in_one_instance(cluster):
    first, _ = cluster.daphne()
    second, _ = cluster.daphne()
    cluster.runobjects()
    bases = [first, second]

    def increment(i):
        return get_json(f"{bases[i % 2]}/tally/t500/increment/")

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(increment, range(500)))
    assert [status for status, _ in results] == [200] * 500
    values = sorted(body["value"] for _, body in results)
    assert values == list(range(1, 501))  # every increment acknowledged exactly once
    status, state = get_json(f"{second}/tally/t500/")
    assert status == 200 and state["value"] == 500
    assert len(state["constructed"]) == 1  # one activation, in one process
    assert len({body["pid"] for _, body in results}) == 1


def increment_until_ok(base, name, deadline):
    """Increment through base until it succeeds; return (seconds waited, errors seen)."""
    started = time.monotonic()
    errors = []
    while time.monotonic() < deadline:
        status, body = get_json(f"{base}/tally/{name}/increment/")
        if status == 200:
            return time.monotonic() - started, errors, body
        assert body["retryable"], body
        errors.append(body["error"])
        time.sleep(0.05)
    raise AssertionError(f"no success before the deadline; errors: {errors[-5:]}")


def test_a_killed_host_fails_calls_retryably_then_the_object_moves(cluster):
    first, first_process = cluster.daphne()
    second, second_process = cluster.daphne()
    acknowledged = 0
    for _ in range(20):
        status, body = get_json(f"{first}/tally/k/increment/")  # first claims the object
        assert status == 200 and body["pid"] == first_process.pid
        acknowledged += 1
    first_process.kill()
    first_process.wait()
    waited, errors, body = increment_until_ok(second, "k", time.monotonic() + 15)
    acknowledged += 1
    assert waited <= 2.0 + 1.5  # LEASE_TTL (2 s) plus a margin
    assert errors and set(errors) == {"ObjectUnavailable"}
    assert body["pid"] == second_process.pid
    assert body["value"] == acknowledged  # every acknowledged write is there
    status, state = get_json(f"{second}/tally/k/")
    assert state["value"] == acknowledged
    assert state["constructed"] == [first_process.pid, second_process.pid]


def test_a_paused_host_loses_the_object_and_its_pending_write_is_refused(cluster):
    first, first_process = cluster.daphne()
    second, second_process = cluster.daphne()
    for i in range(5):
        assert get_json(f"{first}/tally/p/increment/")[1]["value"] == i + 1
    with ThreadPoolExecutor(1) as pool:
        # A call in flight inside the first host: it has read, and will write after 0.5 s.
        pending = pool.submit(get_json, f"{first}/tally/p/slow-increment/?seconds=0.5", 30)
        time.sleep(0.2)
        os.kill(first_process.pid, signal.SIGSTOP)
        try:
            _, errors, body = increment_until_ok(second, "p", time.monotonic() + 15)
            assert errors and set(errors) == {"ObjectUnavailable"}
            assert body == {"value": 6, "pid": second_process.pid}
            assert get_json(f"{second}/tally/p/increment/")[1]["value"] == 7
        finally:
            os.kill(first_process.pid, signal.SIGCONT)
        status, refused = pending.result(timeout=30)
    assert status == 503 and refused["retryable"], refused
    status, state = get_json(f"{second}/tally/p/")
    assert state["value"] == 7  # what the callers were told: 5 + 2, not the refused one
    # The resumed host sends its calls to the new holder instead of answering itself.
    status, body = get_json(f"{first}/tally/p/increment/")
    assert status == 200 and body == {"value": 8, "pid": second_process.pid}


class ChatClient:
    """A browser-like chat client: reconnects when closed and sends again what was lost."""

    def __init__(self, url):
        self.url = url
        self.seen = {}  # seq -> mid, from history and broadcasts
        self.closes = []
        self.ws = None
        self.reader = None

    async def connect(self, deadline):
        import asyncio

        import websockets

        while True:
            try:
                self.ws = await websockets.connect(self.url)
                break
            except (OSError, websockets.InvalidStatus):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        self.reader = asyncio.ensure_future(self._read(self.ws))

    async def _read(self, ws):
        import websockets

        try:
            async for text in ws:
                row = json.loads(text)
                self.seen[row["seq"]] = row["mid"]
        except websockets.ConnectionClosed:
            pass
        self.closes.append(ws.close_code)

    async def say(self, mid, deadline):
        """Send mid until this client has seen it stored (reconnecting as needed)."""
        import asyncio

        while mid not in self.seen.values():
            if time.monotonic() > deadline:
                raise AssertionError(f"{mid} never arrived; closes: {self.closes}")
            if self.reader.done():
                await self.connect(deadline)
            try:
                await self.ws.send(json.dumps({"mid": mid}))
            except Exception:  # closed under us: reconnect and send again
                continue
            for _ in range(20):
                if mid in self.seen.values() or self.reader.done():
                    break
                await asyncio.sleep(0.05)

    async def close(self):
        await self.ws.close()


async def test_a_chat_across_two_daphne_processes_survives_its_host_dying(cluster):
    import asyncio

    a, _ = cluster.daphne(role="client")  # they hold the sockets, not the objects
    b, _ = cluster.daphne(role="client")
    hosts = {p.pid: p for p in (cluster.runobjects(), cluster.runobjects())}
    ann = ChatClient(a.replace("http", "ws") + "/ws/lobby/main/")
    bob = ChatClient(b.replace("http", "ws") + "/ws/lobby/main/")
    deadline = time.monotonic() + 60
    await ann.connect(deadline)
    await bob.connect(deadline)
    for i in range(6):
        await (ann if i % 2 else bob).say(f"m{i}", deadline)
    holder = await asyncio.to_thread(lobby_holder, cluster.redis, hosts)
    hosts[holder].kill()  # the object's host dies; the sockets' processes do not
    hosts[holder].wait()
    for i in range(6, 12):
        await (ann if i % 2 else bob).say(f"m{i}", deadline)
    while len(ann.seen) < 12 or len(bob.seen) < 12:
        assert time.monotonic() < deadline, (ann.seen, bob.seen)
        await asyncio.sleep(0.05)
    assert ann.seen == bob.seen  # one order for everyone
    assert sorted(ann.seen) == list(range(1, 13))
    assert sorted(ann.seen.values()) == sorted(f"m{i}" for i in range(12))
    await ann.close()
    await bob.close()


def lobby_holder(redis_url, hosts, name="main"):
    """The pid of the process (of hosts) that holds the Lobby of name."""
    import redis as redis_client

    from tests.support.objects_cluster import Lobby

    client = redis_client.Redis.from_url(redis_url)
    token = client.get(f"do:lease:{Lobby.objects.id_from_name(name)}").decode()
    pid = int(json.loads(client.get(f"do:host:{token}"))["pid"])
    assert pid in hosts
    return pid


def test_a_redis_restart_is_survived_without_two_live_instances(tmp_path, own_redis):
    cluster_processes = make_cluster(tmp_path, own_redis.url)
    cluster = next(cluster_processes)
    try:
        first, _ = cluster.daphne()
        second, _ = cluster.daphne()
        bases = [first, second]
        results = []
        stop_at = time.monotonic() + 9
        restarted = []

        def worker(n):
            while time.monotonic() < stop_at:
                results.append(get_json(f"{bases[n % 2]}/tally/r/increment/"))
                n += 1

        with ThreadPoolExecutor(8) as pool:
            workers = [pool.submit(worker, n) for n in range(8)]
            time.sleep(2)
            own_redis.stop()  # no persistence: every lease and heartbeat is gone
            time.sleep(1)
            own_redis.start()
            restarted.append(time.monotonic())
            for future in workers:
                future.result()
        acknowledged = [body["value"] for status, body in results if status == 200]
        refused = [body for status, body in results if status != 200]
        assert all(body["retryable"] for body in refused), refused[:3]
        # Calls whose reply was lost with Redis were told "may have run" (or, a reply lost
        # on the way, CallTimeout: "may still run").
        unknown = [
            body
            for body in refused
            if "may have run" in body["message"] or body["error"] == "CallTimeout"
        ]
        late = [b for s, b in results[-20:] if s == 200]
        assert late, "the cluster did not recover by itself"
        status, state = get_json(f"{first}/tally/r/")
        assert status == 200
        final = state["value"]
        # One writer throughout: no value was handed out twice, none was lost, and the
        # only increments nobody was told of are those whose callers heard "may have run".
        assert len(set(acknowledged)) == len(acknowledged)
        assert max(acknowledged) <= final
        assert len(acknowledged) <= final <= len(acknowledged) + len(unknown)
    finally:
        next(cluster_processes, None)


def test_objects_cluster_shows_the_processes_and_their_leases(cluster, tmp_path):
    first, first_process = cluster.daphne()
    assert get_json(f"{first}/tally/shown/increment/")[0] == 200
    output = subprocess.run(
        [sys.executable, "manage.py", "objects_cluster", "--leases"],
        cwd=REPO,
        env=cluster.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    from tests.support.objects_cluster import Tally

    line = next(line for line in output.splitlines() if f" {first_process.pid} " in line)
    assert line.split()[2] == "host" and line.split()[-1] == "1"
    assert str(Tally.objects.id_from_name("shown")) in output


async def test_history_sent_on_connect_arrives_across_processes(cluster):
    import asyncio

    import websockets

    a, _ = cluster.daphne(role="client")
    cluster.runobjects()
    url = a.replace("http", "ws") + "/ws/lobby/history/"
    deadline = time.monotonic() + 30
    writer = ChatClient(url)
    await writer.connect(deadline)
    for i in range(30):
        await writer.say(f"h{i}", deadline)
    await writer.close()
    for _ in range(3):  # the history leaves the host before the reply that accepts
        async with websockets.connect(url) as reader:
            rows = [json.loads(await asyncio.wait_for(reader.recv(), 5)) for _ in range(30)]
        assert [row["mid"] for row in rows] == [f"h{i}" for i in range(30)]


async def test_a_room_that_moves_between_hosts_and_back_keeps_its_sockets(cluster):
    """The room hibernates (0.3 s) and gives its lease back; each message may place it
    in another daphne process. Quiet sockets must follow the new numbering each time."""
    import asyncio

    import websockets

    a, _ = cluster.daphne()
    b, _ = cluster.daphne()
    urls = [
        a.replace("http", "ws") + "/ws/room/moving/?user=ann",
        b.replace("http", "ws") + "/ws/room/moving/?user=bob",
    ]
    async with websockets.connect(urls[0]) as ann, websockets.connect(urls[1]) as bob:
        for i, sender in enumerate([ann, bob, ann, bob, ann]):
            await sender.send(f"move {i}")
            for client in (ann, bob):
                row = json.loads(await asyncio.wait_for(client.recv(), 10))
                assert row["text"] == f"move {i}"
            await asyncio.sleep(1.0)  # past hibernate_after and the lease release


def test_a_daphne_that_stops_cleanly_gives_its_leases_back(cluster):
    import redis

    from tests.support.objects_cluster import Tally

    first, first_process = cluster.daphne()
    assert get_json(f"{first}/tally/given-back/increment/")[0] == 200
    client = redis.Redis.from_url(cluster.redis)
    lease = f"do:lease:{Tally.objects.id_from_name('given-back')}"
    assert client.get(lease) is not None
    stop(first_process)  # SIGTERM: daphne shuts down
    assert client.get(lease) is None
    second, _ = cluster.daphne()
    started = time.monotonic()
    status, body = get_json(f"{second}/tally/given-back/increment/")
    assert status == 200 and body["value"] == 2
    assert time.monotonic() - started < 1.0  # no wait for a lease to run out


async def test_a_call_the_host_cannot_run_is_answered_with_its_error(cluster):
    """A call for an unknown class, or of an unknown event kind, gets its error back."""
    import asyncio

    import redis
    from channels_redis.pubsub import RedisPubSubChannelLayer

    from tests.support.objects_cluster import Tally

    host = cluster.runobjects()
    client = redis.Redis.from_url(cluster.redis)
    token = next(
        t.decode()
        for t in client.zrange("do:hosts", 0, -1)
        if json.loads(client.get(f"do:host:{t.decode()}"))["pid"] == host.pid
    )
    host_channel = json.loads(client.get(f"do:host:{token}"))["channel"]
    layer = RedisPubSubChannelLayer(hosts=[{"address": cluster.redis, "socket_timeout": None}])
    mine = await layer.new_channel()
    receiving = asyncio.ensure_future(layer.receive(mine))
    await asyncio.sleep(0.2)  # subscribed before the replies are published
    envelope = {"type": "do.call", "reply": mine, "name": None, "hops": 1, "chain": []}
    unknown_class = {
        **envelope,
        "id": "t-1",
        "label": "nope.Nope",
        "hex": "00" * 32,
        "kind": "call",
        "fields": {"method": "m", "payload": b""},
    }
    unknown_kind = {
        **envelope,
        "id": "t-2",
        "label": "tests.Tally",
        "hex": str(Tally.objects.id_from_name("unknown-kind")),
        "kind": "no_such_kind",
        "fields": {},
    }
    calls = [unknown_class, unknown_kind]
    await layer.send(host_channel, {"type": "do.batch", "messages": calls})
    items = {}
    while len(items) < len(calls):  # the two replies may leave in one batch or in two
        reply = await asyncio.wait_for(receiving, 10)
        items.update((item["id"], item) for item in reply["messages"])
        if len(items) < len(calls):
            receiving = asyncio.ensure_future(layer.receive(mine))
    await layer.flush()
    assert not items["t-1"]["ok"] and not items["t-2"]["ok"]
    assert items["t-1"]["value"]["type"] == "builtins.LookupError"
    assert "nope.Nope" in items["t-1"]["value"]["message"]
    assert items["t-2"]["value"]["type"] == "builtins.ValueError"
    assert "Unknown event kind 'no_such_kind'" in items["t-2"]["value"]["message"]
    assert items["t-2"]["value"]["retryable"] is False


async def test_a_room_with_sockets_on_its_host_and_on_another_reaches_each_once(cluster):
    """ann's socket is on the room's own host (its messages skip the channel layer), bob's
    on another daphne (the channel layer's group carries them): both get every message
    once, in one order."""
    import asyncio

    import websockets

    a, a_process = cluster.daphne()
    b, b_process = cluster.daphne()
    path = "/ws/lobby/mixed/"
    received = {"ann": [], "bob": []}

    async def read(name, ws):
        async for text in ws:
            received[name].append(json.loads(text))

    async with websockets.connect(a.replace("http", "ws") + path) as ann:
        # ann's connect woke the room: the process holding ann's socket hosts it.
        holder = await asyncio.to_thread(
            lobby_holder,
            cluster.redis,
            {a_process.pid: a_process, b_process.pid: b_process},
            "mixed",
        )
        assert holder == a_process.pid
        async with websockets.connect(b.replace("http", "ws") + path) as bob:
            readers = [
                asyncio.ensure_future(read("ann", ann)),
                asyncio.ensure_future(read("bob", bob)),
            ]
            for i in range(40):
                await (ann if i % 2 else bob).send(json.dumps({"mid": f"m{i}"}))
            deadline = time.monotonic() + 30
            while min(len(rows) for rows in received.values()) < 40:
                assert time.monotonic() < deadline, received
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # a duplicate would arrive by now
            for reader in readers:
                reader.cancel()
    assert received["ann"] == received["bob"]
    assert [row["seq"] for row in received["ann"]] == list(range(1, 41))
    assert {row["pid"] for row in received["ann"]} == {a_process.pid}
