"""Schedules and the queue in a cluster: real Redis, a runobjects host, rqworker processes.

The contract of tests/contracts/schedules.py, then what only a cluster can lose: its
workers (SIGKILL, before a schedule is due) and its host (SIGKILL during a run).
"""

import asyncio
import time

import pytest

from durable_objects.conf import cluster_channel_layers
from tests.contracts.alarms import wait_for
from tests.contracts.schedules import ScheduleContract, runs_of
from tests.support.objects_schedules import Scheduled
from tests.test_alarms_rq import SCHEDULER_GRACE, RQCluster


class ScheduleCluster(RQCluster):
    def __init__(self, root, redis_url):
        super().__init__(root, redis_url)
        # A host is taken for dead after three missed heartbeats. With the whole suite on
        # two cores a heartbeat can be a second late; two-second beats give it six
        # seconds. (The lease, 5 s, and so failover, are unchanged.)
        self.env["DO_TEST_HOST_HEARTBEAT"] = "2.0"

    def stub(self, name):
        return Scheduled.objects.get_by_name(name)


@pytest.fixture(scope="module")
def schedule_cluster(tmp_path_factory, redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.set("do:boot", repr(time.time() - 3600))  # a Redis up for an hour, not a restart
    cluster = ScheduleCluster(tmp_path_factory.mktemp("rq-schedules"), redis_url)
    cluster.manage("migrate", "-v0")
    cluster.runobjects()
    cluster.start_workers()
    yield cluster
    cluster.stop()


@pytest.fixture
def schedules(schedule_cluster, settings):
    """This test process as a client of the cluster."""
    settings.CHANNEL_LAYERS = cluster_channel_layers(schedule_cluster.redis_url)
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "PLACEMENT": "redis",
        "REDIS_URL": schedule_cluster.redis_url,
        "TRANSPORT_LAYER": "transport",
        "CLUSTER_ROLE": "client",
        "HOST_HEARTBEAT": 2.0,
        "LEASE_TTL": 5.0,
        "CALL_TIMEOUT": 10.0,
    }
    return schedule_cluster


class RQScheduleContractTests(ScheduleContract):
    """The schedule contract on RQ: a runobjects host and rqworker processes."""


async def test_workers_killed_before_a_schedule_is_due_and_the_sweep_delivers_it(schedules):
    stub = schedules.stub("workers-killed")
    schedules.kill_workers()
    await stub.plan(1.0, "record", "after-the-kill")
    await stub.push("record", "queued-without-workers")
    await asyncio.sleep(2.0)  # due now, and no worker to run its job
    schedules.start_workers()  # their schedulers wait a minute for the dead one's lock
    await asyncio.sleep(SCHEDULER_GRACE + 1)
    schedules.manage("sweep_alarms")  # or the hosts' own sweep: the job is late, so lost
    rows = await wait_for(lambda: runs_of(stub, None, 2), 30 + schedules.slack)
    assert sorted(row["tag"] for row in rows) == ["after-the-kill", "queued-without-workers"]


async def test_a_host_killed_during_a_run_and_the_run_moves_with_its_object(schedules, tmp_path):
    stub = schedules.stub("host-killed")
    attempts = tmp_path / "attempts.txt"
    await stub.configure(slow=2.0, attempts_file=str(attempts))
    # Due a second from now, so the run starts after both calls returned and the kill
    # lands while it is under way (the host's own timer runs it on time).
    await stub.plan(1.0, "flaky", "survived", id="slow")
    await stub.push("record", "behind-the-slow-one")

    async def running():
        return attempts.exists() and attempts.read_text()

    await wait_for(running, 20 + schedules.slack)  # the run is under way
    schedules.host.kill()  # SIGKILL: the run's event never commits
    schedules.host.wait()
    schedules.runobjects()  # the object moves here once the lease runs out (LEASE_TTL)
    rows = await wait_for(lambda: runs_of(stub, None, 2), 90 + schedules.slack)
    # The queue and the schedules are apart: the task did not wait for the schedule's run.
    assert sorted(row["tag"] for row in rows) == ["behind-the-slow-one", "survived"]
    survived = next(row for row in rows if row["tag"] == "survived")
    assert survived["retry_count"] == 0  # not a failure: a delivery that never ended
    assert len(attempts.read_text().splitlines()) >= 2  # ran on the old host, then here
    await asyncio.sleep(1 + schedules.slack)
    assert len(await stub.runs()) == 2 and await stub.schedules() == []
