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

from durable_objects.testing.servers import LitestreamDaemon
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
            self.start()

        def start(self):
            if self.daemon.process.poll() is not None:
                self.daemon.start()
            port = free_port()
            self.process = start_daphne("tests.support.asgi:application", port, self.env)
            self.url = f"http://127.0.0.1:{port}"

        def kill(self, wipe=False):
            """SIGKILL the machine's processes; with wipe, its disk is lost too."""
            for process in (self.process, self.daemon.process):
                if process.poll() is None:
                    process.kill()
                    process.wait()
            if wipe:
                shutil.rmtree(self.root, ignore_errors=True)

        def pause(self):
            os.kill(self.process.pid, signal.SIGSTOP)

        def resume(self):
            os.kill(self.process.pid, signal.SIGCONT)

        def stop(self):
            self.resume() if self.process.poll() is None else None
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
