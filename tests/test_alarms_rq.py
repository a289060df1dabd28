"""Alarms in a cluster: real Redis, a runobjects host and ``manage.py rqworker --with-scheduler``.

The test process joins the cluster as a client, so its calls reach the objects in the
runobjects host; the alarm jobs run in the worker, whose calls are routed the same way.
Every test runs twice: with the host's own timers in front of the jobs (the default,
``"holder"``), and with ALARM_FALLBACK_DELAY None, where the workers deliver every alarm
(``"workers"``).
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from durable_objects.alarms.rq import SCHEDULER_GRACE, WORKER_COMMAND
from durable_objects.conf import cluster_channel_layers
from tests.contracts.alarms import AlarmContract, fired_rows, wait_for
from tests.support.objects_alarms import Alarmed
from tests.support.servers import REPO, stop

RETRY_BASE = 0.5
MAX_RETRIES = 3
# Workers deliver one job at a time each; several deliver a burst in parallel, so their
# objects' commits (each an fsync) overlap on the host's commit threads.
WORKERS = 3


class RQCluster:
    """The processes of one module's cluster; workers can be killed and restarted."""

    slack = 2.0  # the scheduler polls once a second, and a job may wait for its time
    retry_base = RETRY_BASE
    max_retries = MAX_RETRIES

    def __init__(self, root, redis_url, delivery="holder"):
        self.redis_url = redis_url
        self.delivery = delivery
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "DJANGO_SETTINGS_MODULE": "tests.support.cluster_settings",
            "DO_TEST_REDIS_URL": redis_url,
            "DO_TEST_DB": str(root / "db.sqlite3"),
            "DO_TEST_STORAGE_ROOT": str(root / "objects"),
            "DO_TEST_ALARM_RETRY_BASE": str(RETRY_BASE),
            "DO_TEST_ALARM_MAX_RETRIES": str(MAX_RETRIES),
            # The defaults: these tests load the host with bursts of new shards and leases.
            "DO_TEST_HOST_HEARTBEAT": "1.0",
            "DO_TEST_LEASE_TTL": "5",
            # Sweeps every 2 s: they make up for RQ's scheduler, which stops scheduling
            # after a FLUSHALL (its lock is gone) and after a SIGKILL of its worker.
            "DO_TEST_ALARM_SWEEP_INTERVAL": "2",
            "DO_TEST_ALARM_FALLBACK_DELAY": "2" if delivery == "holder" else "none",
        }
        self.processes = []
        self.workers = []
        self.log = (root / "processes.log").open("a")

    def manage(self, *args):
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def runobjects(self):
        """Start a host; the newest is ``self.host``."""
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runobjects"],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.processes.append(process)
        assert "Hosting objects" in process.stdout.readline()
        self.host = process
        return process

    def start_workers(self, count=WORKERS):
        """Start count ``rqworker --with-scheduler`` processes (one holds the scheduler)."""
        import redis
        from rq import Worker

        connection = redis.Redis.from_url(self.redis_url)
        before = {w.name for w in Worker.all(connection=connection)}
        started = [
            subprocess.Popen(
                [sys.executable, "manage.py", *WORKER_COMMAND],
                cwd=REPO,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=self.log,
                start_new_session=True,  # a group: the worker and its scheduler process
            )
            for _ in range(count)
        ]
        self.processes.extend(started)
        self.workers.extend(started)
        deadline = time.monotonic() + 30
        while len({w.name for w in Worker.all(connection=connection)} - before) < count:
            assert all(p.poll() is None for p in started), "an rqworker exited"
            assert time.monotonic() < deadline, "the rqworkers did not register"
            time.sleep(0.1)

    def kill_workers(self):
        """SIGKILL every worker, as a machine or container dies: the job running in one of
        them dies with it. The whole process group: RQ's scheduler, a process of its own,
        outlives a SIGKILL of its worker alone (docs/topics/alarms.md)."""
        for worker in self.workers:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        self.workers = []

    def stub(self, name):
        return Alarmed.objects.get_by_name(name)

    def stop(self):
        for process in self.processes:
            stop(process)
        self.log.close()


@pytest.fixture(scope="module", params=["holder", "workers"])
def rq_cluster(request, tmp_path_factory, redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.set("do:boot", repr(time.time() - 3600))  # a Redis up for an hour, not a restart
    cluster = RQCluster(tmp_path_factory.mktemp("rq-cluster"), redis_url, request.param)
    cluster.manage("migrate", "-v0")
    cluster.runobjects()
    cluster.start_workers()
    yield cluster
    cluster.stop()


@pytest.fixture
def alarms(rq_cluster, settings):
    """This test process as a client of the cluster."""
    settings.CHANNEL_LAYERS = cluster_channel_layers(rq_cluster.redis_url)
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "PLACEMENT": "redis",
        "REDIS_URL": rq_cluster.redis_url,
        "TRANSPORT_LAYER": "transport",
        "CLUSTER_ROLE": "client",
        "HOST_HEARTBEAT": 1.0,
        "LEASE_TTL": 5.0,
        "CALL_TIMEOUT": 10.0,
    }
    return rq_cluster


class RQAlarmContractTests(AlarmContract):
    """The alarm contract on RQ: a runobjects host and rqworker processes."""


async def test_a_worker_killed_during_delivery_still_leads_to_one_success(alarms, tmp_path):
    stub = alarms.stub("worker-killed")
    attempts = tmp_path / "attempts.txt"
    await stub.configure(slow=2.0, attempts_file=str(attempts))
    await stub.arm(time.time())
    await wait_for(lambda: _exists(attempts), 10 + alarms.slack)  # the handler is running
    alarms.kill_workers()
    alarms.start_workers()
    alarms.manage("sweep_alarms")  # finds the job of the dead worker, if the alarm is due
    [row] = await wait_for(lambda: fired_rows(stub), 20 + alarms.slack)
    assert row["retry_count"] == 0
    await asyncio_sleep(3 + alarms.slack)  # anything re-created runs and finds nothing due
    assert len(await stub.fired()) == 1  # exactly one successful outcome
    assert len(attempts.read_text().splitlines()) >= 1  # the handler may have run again


async def test_a_worker_killed_before_delivery_is_redelivered_by_the_sweep(alarms):
    stub = alarms.stub("worker-killed-early")
    alarms.kill_workers()
    await stub.arm(time.time() + 1.0)
    await asyncio_sleep(2.0)  # due now, and no worker to run its job
    alarms.start_workers()  # their schedulers wait a minute for the dead one's lock
    await asyncio_sleep(SCHEDULER_GRACE + 1)
    alarms.manage("sweep_alarms")  # or the hosts' own sweep: the job is late, so lost
    [row] = await wait_for(lambda: fired_rows(stub), 20 + alarms.slack)
    assert row["retry_count"] == 0


async def test_flushall_then_the_sweep_still_fires_every_pending_alarm(alarms):
    import redis

    stubs = [alarms.stub(f"flushed-{n}") for n in range(20)]
    due = time.time() + 4.0
    for stub in stubs:
        await stub.arm(due)
    await asyncio_sleep(1.0)  # the catalog is flushed every 0.1 s in the tests
    redis.Redis.from_url(alarms.redis_url).flushall()  # every job is gone
    out = alarms.manage("sweep_alarms", "--list")
    listed = {line.split()[1] for line in out.splitlines()[:-1]}
    assert {str(stub.id) for stub in stubs} <= listed, out  # earlier tests' alarms too
    # The jobs are re-created by this command or, if it noticed first, by the host: its
    # heartbeat sees Redis's boot marker gone and sweeps at once.
    for stub in stubs:
        [row] = await wait_for(lambda stub=stub: fired_rows(stub), 30 + alarms.slack)
        assert row["at"] >= due
    out = alarms.manage("sweep_alarms", "--list")
    assert not {str(stub.id) for stub in stubs} & set(out.split()), "all were consumed"


async def _exists(path):
    return path.exists() and path.read_text()


async def asyncio_sleep(seconds):
    import asyncio

    await asyncio.sleep(seconds)


async def test_a_host_killed_during_delivery_and_the_alarm_moves_with_its_object(alarms, tmp_path):
    stub = alarms.stub("host-killed")
    attempts = tmp_path / "attempts.txt"
    await stub.configure(slow=2.0, attempts_file=str(attempts))
    old_host = alarms.host
    await stub.arm(time.time())
    await wait_for(lambda: _exists(attempts), 10 + alarms.slack)  # the handler is running
    old_host.kill()  # SIGKILL: the event never commits
    old_host.wait()
    alarms.runobjects()  # the object moves here once the lease runs out (LEASE_TTL)
    [row] = await wait_for(lambda: fired_rows(stub), 60 + alarms.slack)
    assert row["retry_count"] == 0  # not a handler failure: a delivery that never ended
    assert len(attempts.read_text().splitlines()) >= 2  # ran on the old host, then here
    await asyncio_sleep(1 + alarms.slack)
    assert len(await stub.fired()) == 1


async def test_everything_restarted_after_redis_lost_its_data_still_fires(alarms):
    import redis

    stubs = [alarms.stub(f"restarted-{n}") for n in range(5)]
    due = time.time() + 6.0
    for stub in stubs:
        await stub.arm(due)
    await asyncio_sleep(1.0)  # the catalog is flushed every 0.1 s in the tests
    alarms.kill_workers()
    alarms.host.kill()
    alarms.host.wait()
    client = redis.Redis.from_url(alarms.redis_url)
    client.flushall()  # and Redis comes back with nothing
    client.set("do:boot", repr(time.time() - 3600))
    alarms.runobjects()  # its start sweep re-creates the jobs from the catalog
    alarms.start_workers()
    for stub in stubs:
        [row] = await wait_for(lambda stub=stub: fired_rows(stub), 40 + alarms.slack)
        assert row["at"] >= due


async def test_the_host_delivers_the_alarms_it_committed_with_no_worker_running(alarms):
    import redis

    from durable_objects.alarms.rq import JOBS

    if alarms.delivery != "holder":
        pytest.skip("the workers deliver every alarm (ALARM_FALLBACK_DELAY None)")
    stub = alarms.stub("holder-timer")
    alarms.kill_workers()
    try:
        due = time.time() + 1.0
        await stub.arm(due)
        client = redis.Redis.from_url(alarms.redis_url)
        assert client.hget(JOBS, str(stub.id)) is not None  # the job behind the timer
        [row] = await wait_for(lambda: fired_rows(stub), 10)
        assert row["at"] >= due
        # The run's commit deleted the alarm and, with it, the job that waited behind.
        await wait_for(lambda: _no_job(client, str(stub.id)), 10)
    finally:
        alarms.start_workers()


async def test_an_alarm_whose_host_died_before_its_time_is_delivered_by_its_job(alarms):
    stub = alarms.stub("holder-died")
    due = time.time() + 2.0
    await stub.arm(due)
    alarms.host.kill()  # SIGKILL before the time: its timer dies with it
    alarms.host.wait()
    alarms.runobjects()  # a host the job's call can reach once the lease runs out
    [row] = await wait_for(lambda: fired_rows(stub), 40 + alarms.slack)
    assert row["at"] >= due
    await asyncio_sleep(1 + alarms.slack)
    assert len(await stub.fired()) == 1


async def _no_job(client, hex_id):
    from durable_objects.alarms.rq import JOBS

    return client.hget(JOBS, hex_id) is None
