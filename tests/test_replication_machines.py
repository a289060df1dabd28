"""Machines with disks of their own (issue 14): real daphne hosts, each with its own
storage root and its own Litestream daemon, one Redis, one SeaweedFS.

The machines here share loopback; ``tests/test_machines*.py`` run the same kind of rig
with each machine in a network namespace. Nothing here is timed: only what was
acknowledged, and where it is afterwards.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from durable_objects.testing.replication import LitestreamDaemon
from tests.support.servers import REPO, free_port, start_daphne, stop
from tests.test_cluster import get_json

pytest_plugins = ["tests.support.replication"]

DEADLINE = 60  # seconds any wait for the cluster may take here


@pytest.fixture
def machines(tmp_path, redis_url, seaweed):
    """make(n) -> machines, each a daphne host with its own root and Litestream daemon."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.set("do:boot", repr(time.time() - 3600))
    common = {
        "DJANGO_SETTINGS_MODULE": "tests.support.cluster_settings",
        "DO_TEST_REDIS_URL": redis_url,
        "DO_TEST_DB": str(tmp_path / "db.sqlite3"),
        "DO_TEST_REPLICA_URL": seaweed.url(f"machines-{tmp_path.name}"),
        **seaweed.env,
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=REPO,
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            **common,
            "DO_TEST_STORAGE_ROOT": str(tmp_path / "m"),
            "DO_TEST_LITESTREAM_SOCKET": str(tmp_path / "none.sock"),
        },
        check=True,
    )
    made = []

    class Machine:
        def __init__(self, index):
            self.root = tmp_path / f"machine-{index}"
            self.daemon = LitestreamDaemon(tmp_path / f"ls-{index}", env=seaweed.env)
            self.env = {
                **common,
                "DO_TEST_STORAGE_ROOT": str(self.root),
                "DO_TEST_LITESTREAM_SOCKET": str(self.daemon.socket_path),
            }
            self.process = None
            self.workers = []
            self.start()

        def start(self):
            if self.daemon.process.poll() is not None:
                self.daemon.start()
            port = free_port()
            self.process = start_daphne("tests.support.asgi:application", port, self.env)
            self.url = f"http://127.0.0.1:{port}"

        def kill(self, wipe=False):
            """SIGKILL the machine's processes; with wipe, its disk is lost too."""
            for worker in self.workers:
                if worker.poll() is None:
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait()
            for process in (self.process, self.daemon.process):
                if process.poll() is None:
                    process.kill()
                    process.wait()
            if wipe:
                shutil.rmtree(self.root, ignore_errors=True)

        def rqworker(self):
            """An RQ worker of this machine (the cluster's alarms are RQ jobs)."""
            from durable_objects.alarms.rq import WORKER_COMMAND

            worker = subprocess.Popen(
                [sys.executable, "manage.py", *WORKER_COMMAND],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO), **self.env},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self.workers.append(worker)
            return worker

        def pause(self):
            os.kill(self.process.pid, signal.SIGSTOP)

        def resume(self):
            os.kill(self.process.pid, signal.SIGCONT)

        def stop(self):
            if self.process.poll() is None:
                self.resume()
            for worker in self.workers:
                if worker.poll() is None:
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait()
            stop(self.process)
            self.daemon.stop()

    def make(count):
        new = [Machine(len(made) + i) for i in range(count)]
        made.extend(new)
        return new

    make.redis = client
    yield make
    for machine in made:
        machine.stop()


def until_ok(url, deadline=DEADLINE):
    """GET url until it answers 200; every failure before must be retryable."""
    end = time.monotonic() + deadline
    errors = []
    while time.monotonic() < end:
        status, body = get_json(url, timeout=30)
        if status == 200:
            return body, errors
        assert body.get("retryable"), body
        errors.append(body["error"])
        time.sleep(0.1)
    raise AssertionError(f"no success within {deadline} s: {errors[-5:]}")


def test_a_machine_loss_keeps_every_acknowledged_write(machines):
    first, second = machines(2)
    acknowledged = []
    for _ in range(25):
        status, body = get_json(f"{first.url}/tally/loss/increment/")
        assert status == 200, body
        acknowledged.append(body["value"])
    assert acknowledged == list(range(1, 26))
    first.kill(wipe=True)  # the machine and its disk are gone
    body, errors = until_ok(f"{second.url}/tally/loss/increment/")
    assert body["value"] == 26  # restored from the replica: all 25 writes, then this one
    assert set(errors) <= {"ObjectUnavailable", "CallTimeout"}
    state, _ = until_ok(f"{second.url}/tally/loss/")
    assert state["pid"] == second.process.pid


def test_an_object_moves_back_and_forth_between_machines(machines):
    first, second = machines(2)
    for expected in range(1, 6):
        status, body = get_json(f"{first.url}/tally/move/increment/")
        assert (status, body["value"]) == (200, expected)
    first.kill()  # the processes die, the disk stays (stale once the object moves)
    body, _ = until_ok(f"{second.url}/tally/move/increment/")
    assert body["value"] == 6
    for expected in range(7, 10):
        status, body = get_json(f"{second.url}/tally/move/increment/")
        assert (status, body["value"]) == (200, expected)
    second.kill()
    first.start()  # its local copy is stale: it must restore, not serve what it has
    body, _ = until_ok(f"{first.url}/tally/move/increment/")
    assert body["value"] == 10


def test_a_stale_copy_is_not_served_after_redis_lost_the_lineage(machines):
    first, second = machines(2)
    for expected in range(1, 6):
        status, body = get_json(f"{first.url}/tally/amnesia/increment/")
        assert (status, body["value"]) == (200, expected)
    first.kill()  # its disk keeps generation 1: 5
    body, _ = until_ok(f"{second.url}/tally/amnesia/increment/")
    assert body["value"] == 6
    for expected in range(7, 10):
        status, body = get_json(f"{second.url}/tally/amnesia/increment/")
        assert (status, body["value"]) == (200, expected)
    second.kill(wipe=True)
    machines.redis.flushall()  # leases and lineages gone, as after a restart
    machines.redis.set("do:boot", repr(time.time() - 3600))
    first.start()  # the store holds generation 2 (9): restored, not the local 5
    body, _ = until_ok(f"{first.url}/tally/amnesia/increment/")
    assert body["value"] == 10


def test_a_new_object_with_nothing_in_the_store_starts_empty_and_replicates(machines):
    (first,) = machines(1)
    status, body = get_json(f"{first.url}/tally/fresh-lineage/increment/")
    assert (status, body["value"]) == (200, 1)
    lineages = [machines.redis.hgetall(key) for key in machines.redis.keys("do:lineage:*")]
    assert [lineage[b"synced"] for lineage in lineages] == [b"1"]


def test_a_claim_taken_elsewhere_fences_the_old_holder(machines):
    (first,) = machines(1)
    status, body = get_json(f"{first.url}/tally/fence/increment/")
    assert status == 200
    hex_id = next(
        key.decode().removeprefix("do:lease:") for key in machines.redis.keys("do:lease:*")
    )
    # Another machine claims the object while the first still trusts its lease: the
    # first's next write commits on its disk, but the replies wait on the epoch check.
    machines.redis.set(f"do:lease:{hex_id}", "another-machine")
    machines.redis.incr(f"do:epoch:{hex_id}")
    status, body = get_json(f"{first.url}/tally/fence/increment/")
    assert status == 503, body
    assert body["retryable"]
    assert body["error"] in {"ObjectReset", "FencedError", "ObjectUnavailable"}


def test_concurrent_writers_through_two_machines_count_once_each(machines):
    first, second = machines(2)
    urls = [first.url, second.url]

    def increment(i):
        return get_json(f"{urls[i % 2]}/tally/many/increment/")

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(increment, range(200)))
    assert [status for status, _ in results] == [200] * 200
    assert sorted(body["value"] for _, body in results) == list(range(1, 201))


def test_a_table_key_values_and_an_alarm_move_machines_intact(machines):
    first, second = machines(2)
    second.rqworker()  # the alarm is delivered by RQ, to wherever the object lives
    for text in ("a", "b", "c"):
        status, body = get_json(f"{first.url}/ledger/l1/add/?text={text}")
        assert status == 200 and body["pid"] == first.process.pid
    status, body = get_json(f"{first.url}/ledger/l1/add/?text=d&alarm_in=4")
    assert status == 200
    first.kill(wipe=True)
    state, _ = until_ok(f"{second.url}/ledger/l1/")
    assert state["entries"] == ["a", "b", "c", "d"]
    assert state["kv"] == ["entry:a", "entry:b", "entry:c", "entry:d"]
    assert state["alarm"] is not None or state["fired"]  # the alarm row moved with it
    end = time.monotonic() + DEADLINE
    while not state["fired"]:
        assert time.monotonic() < end, "the alarm never fired after the move"
        time.sleep(0.2)
        state, _ = until_ok(f"{second.url}/ledger/l1/")
    assert state["fired"] == [second.process.pid]  # on the machine that holds it now
    assert state["pid"] == second.process.pid


def test_a_replica_that_is_gone_makes_the_object_unavailable_not_empty(machines, seaweed):
    first, second = machines(2)
    for _ in range(3):
        assert get_json(f"{first.url}/tally/gone/increment/")[0] == 200
    hex_id = next(
        key.decode().removeprefix("do:lease:") for key in machines.redis.keys("do:lease:*")
    )
    first.kill(wipe=True)
    # The lineage points at a generation whose replica holds nothing (deleted, or the
    # bucket is another one): restoring it must refuse, not start the object empty.
    machines.redis.hset(f"do:lineage:{hex_id}", "synced", "77")
    end = time.monotonic() + DEADLINE
    while True:
        status, body = get_json(f"{second.url}/tally/gone/increment/", timeout=30)
        assert status != 200, body  # never a fresh, empty counter
        if "generation 77" in body.get("message", ""):
            break
        assert time.monotonic() < end, body
        time.sleep(0.1)
    assert body["error"] == "ObjectUnavailable" and body["retryable"]


def test_a_never_replicated_object_on_a_lost_machine_is_unavailable(tmp_path, machines):
    first, second = machines(2)
    first.daemon.stop()  # "local" durability would acknowledge, but nothing replicates
    first.process.kill()
    first.process.wait()
    first.env["DO_TEST_DURABILITY"] = "local"
    first.daemon.start()
    first.start()
    first.daemon.process.kill()  # the daemon dies after the host checked it
    first.daemon.process.wait()
    status, body = get_json(f"{first.url}/tally/lost/increment/")
    assert status == 200 and body["value"] == 1  # acknowledged: durable on that disk only
    first.kill(wipe=True)
    second.process.kill()
    second.process.wait()
    second.env["DO_TEST_DURABILITY"] = "local"
    second.start()
    end = time.monotonic() + DEADLINE
    while True:
        status, body = get_json(f"{second.url}/tally/lost/increment/", timeout=30)
        assert status != 200, body
        if "never replicated" in body.get("message", ""):
            break
        assert time.monotonic() < end, body
        time.sleep(0.1)
    assert body["error"] == "ObjectUnavailable"


def replica_keys(seaweed, prefix):
    """The keys under prefix in the test bucket (S3 ListObjectsV2)."""
    import re
    from urllib.parse import quote

    status, body = seaweed.s3_request(
        "GET", f"/{seaweed.bucket}", query=f"list-type=2&prefix={quote(prefix, safe='')}"
    )
    assert status == 200, body
    return re.findall(r"<Key>([^<]+)</Key>", body.decode())


def test_old_generations_are_deleted_after_retention(tmp_path, machines, seaweed):
    first, second = machines(2)
    for machine in (first, second):
        machine.process.kill()
        machine.process.wait()
        machine.env["DO_TEST_RETENTION"] = "0"
        machine.start()
    for _ in range(3):
        assert get_json(f"{first.url}/tally/old/increment/")[0] == 200
    hex_id = next(
        key.decode().removeprefix("do:lease:") for key in machines.redis.keys("do:lease:*")
    )
    base = f"machines-{tmp_path.name}/tests.Tally/{hex_id[:2]}/{hex_id}/"
    assert any(key.startswith(base + "1/") for key in replica_keys(seaweed, base))
    first.kill()
    body, _ = until_ok(f"{second.url}/tally/old/increment/")
    assert body["value"] == 4
    end = time.monotonic() + DEADLINE
    while any(key.startswith(base + "1/") for key in replica_keys(seaweed, base)):
        assert time.monotonic() < end, "generation 1 was never deleted"
        time.sleep(0.2)
    assert any(key.startswith(base + "2/") for key in replica_keys(seaweed, base))
    assert machines.redis.zcard("do:retired") == 0


async def test_a_chat_keeps_its_history_and_sockets_when_its_machine_is_lost(machines):
    import asyncio

    from tests.test_cluster import ChatClient

    first, second = machines(2)
    ann = ChatClient(first.url.replace("http", "ws") + "/ws/lobby/lost/")
    bob = ChatClient(second.url.replace("http", "ws") + "/ws/lobby/lost/")
    deadline = time.monotonic() + 2 * DEADLINE  # reconnects under load take a while
    await ann.connect(deadline)  # the room lives on the first machine
    await bob.connect(deadline)  # a socket on the second, its object on the first
    for i in range(6):
        await (ann if i % 2 else bob).say(f"m{i}", deadline)
    await asyncio.to_thread(first.kill, True)  # the machine, its sockets and its disk
    ann.url = bob.url  # ann's socket died with the machine: she reconnects elsewhere
    try:
        for i in range(6, 12):
            await (ann if i % 2 else bob).say(f"m{i}", deadline)
        while len(bob.seen) < 12:
            assert time.monotonic() < deadline, bob.seen
            await asyncio.sleep(0.05)
    except Exception as error:  # say where it stood: what Bob saw, the survivor's logs
        raise AssertionError(
            f"{error!r}; bob saw {bob.seen}, closes {bob.closes}\n"
            f"--- the surviving machine's logs ---\n{second.logs(4000)}"
        ) from error
    # The messages table came back from the replica: one sequence, no gap, no repeat.
    assert sorted(bob.seen) == list(range(1, 13))
    assert sorted(bob.seen.values()) == sorted(f"m{i}" for i in range(12))
    # Bob's socket, on the surviving machine, was closed only as "service restart"
    # (1012) while its object moved, and he reconnected: the designed behaviour.
    assert set(bob.closes) <= {1012}
    await ann.close()
    await bob.close()


def test_a_shard_from_before_replication_is_kept_and_replicated(machines, seaweed):
    (first,) = machines(1)
    for _ in range(2):
        assert get_json(f"{first.url}/tally/before/increment/")[0] == 200
    hex_id = next(
        key.decode().removeprefix("do:lease:") for key in machines.redis.keys("do:lease:*")
    )
    first.kill()
    # As after a Redis that lost its data, or a root from before replication was on: no
    # lineage, no lease, only the shard on this machine's disk.
    machines.redis.delete(f"do:lineage:{hex_id}", f"do:lease:{hex_id}")
    first.start()
    body, _ = until_ok(f"{first.url}/tally/before/increment/")
    assert body["value"] == 3  # the local copy was used, not thrown away
