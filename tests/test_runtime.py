"""The runtime semantics under each placement: ``PlacementContract`` (tests/contracts)."""

import asyncio
import time

import pytest

from durable_objects.conf import cluster_channel_layers
from durable_objects.runtime.lifecycle import current_host, reset_host
from tests.contracts.placement import PlacementContract
from tests.support.objects import Counter


async def cancel_leftover_tasks():
    """Cancel the running loop's other tasks until they end.

    The host's shutdown leaves its cluster's tasks to the loop's end. Python 3.11's
    asyncio.wait_for (inside redis-py) can swallow a cancellation that arrives as its inner
    call completes, and the heartbeat loop then runs on; the loop's close would wait for it
    forever, so it is cancelled again.
    """
    current = asyncio.current_task()
    for _ in range(100):
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=0.1)
    raise AssertionError(f"tasks that refuse to end: {tasks}")


class LocalPlacementTests(PlacementContract):
    """The contract on the embedded default: one process, the storage root locked to it."""


class RedisPlacementTests(PlacementContract):
    """The contract with this process as a cluster host: leases in the session's Redis,
    calls between processes on the cluster's channel layers."""

    @pytest.fixture(autouse=True)
    async def placement(self, redis_url, settings, storage_root):
        """Every test on an empty Redis, this process its objects' host."""
        import redis

        client = redis.Redis.from_url(redis_url)
        client.flushall()
        # A Redis up for an hour, not one that just lost its data: leases may be claimed.
        client.set("do:boot", repr(time.time() - 3600))
        client.close()
        settings.CHANNEL_LAYERS = cluster_channel_layers(redis_url)
        settings.RQ_QUEUES = {"default": {"URL": redis_url}}
        settings.DURABLE_OBJECTS = {
            **settings.DURABLE_OBJECTS,
            "PLACEMENT": "redis",
            "REDIS_URL": redis_url,
            "TRANSPORT_LAYER": "transport",
            # Sync tests call through a background host, which would otherwise be a client.
            "CLUSTER_ROLE": "host",
        }
        yield redis_url
        # The cluster's tasks (heartbeat, transport) end before their loop does: a
        # background host's loop is closed with its tasks pending, the test's is closed
        # by pytest-asyncio.
        host = current_host()
        if host is not None and host.usable and host.thread is not None:
            future = asyncio.run_coroutine_threadsafe(cancel_leftover_tasks(), host.loop)
            await asyncio.wrap_future(future)
        reset_host()
        await cancel_leftover_tasks()

    async def test_the_host_holds_the_lease_of_each_object_it_runs(self, placement):
        import redis

        from durable_objects.sockets import presence

        stub = Counter.objects.get_by_name("leased")
        assert await stub.increment() == 1
        client = redis.Redis.from_url(placement)
        try:
            assert client.get(f"do:lease:{stub.id}") == presence.HOLDER.encode()
        finally:
            client.close()
