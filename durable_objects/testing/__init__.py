"""Helpers for users' own tests, like Cloudflare's vitest-pool-workers helpers."""

import asyncio

from ..conf import get_config
from ..ids import DurableObjectId
from ..runtime.activation import wait_idle
from ..runtime.events import RunInObject
from ..runtime.host import call, current_host, get_host

__all__ = [
    "evict",
    "evict_all",
    "is_active",
    "list_ids",
    "run_durable_object_alarm",
    "run_in_durable_object",
]


async def run_in_durable_object(stub, fn):
    """Run ``fn(instance, ctx)`` inside the object's live instance, as one event.

    fn may be sync or async; its result is returned as is (not serialized) and its
    exceptions are raised as they are.
    """
    return await call(stub._namespace.model, stub.id, RunInObject(fn, name=stub.id.name))


async def run_durable_object_alarm(stub):
    """Run the object's alarm now if one is set, whatever its time; True if one ran.

    Like Cloudflare's ``runDurableObjectAlarm()``. The alarm is consumed as a delivery
    would: inside the handler ``get_alarm()`` is None unless the handler sets a new one.
    If the handler raises, the failure is recorded and retried like any alarm's, and the
    exception is raised here.
    """
    from ..alarms.events import AlarmDelivery
    from ..runtime.errors import decode_exception

    result = await call(
        stub._namespace.model, stub.id, AlarmDelivery(force=True, name=stub.id.name)
    )
    if result["ran"] and not result["ok"]:
        raise decode_exception(result["error"])
    return result["ran"]


async def evict(stub):
    """Drop the object's instance as hibernation would, after its pending events."""
    await _on_host(_evict, [stub.id.key])


async def evict_all():
    """Drop every live instance of this process."""
    await _on_host(_evict, None)


async def _evict(host, keys):
    targets = list(host.activations.values())
    if keys is not None:
        targets = [a for a in targets if a.key in keys]
    for activation in targets:
        await wait_idle(activation)
        host.catalog.touch(activation)
        activation.hibernate()


def is_active(stub):
    """Return True if the object has a live instance in this process."""
    host = current_host()
    if host is None:
        return False
    activation = host.activations.get(stub.id.key)
    return activation is not None and activation.instance is not None


def list_ids(cls):
    """Return the IDs of every object of cls with a shard under the storage root, sorted."""
    app_label, class_name = cls._meta.label.split(".")
    directory = get_config()["STORAGE_ROOT"] / app_label / class_name
    ids = sorted(path.stem for path in directory.glob("*/*.sqlite3"))
    return [DurableObjectId(cls._meta.label, hex_id) for hex_id in ids]


async def _on_host(fn, arg):
    host = get_host()
    if host.loop is asyncio.get_running_loop():
        return await fn(host, arg)
    future = asyncio.run_coroutine_threadsafe(fn(host, arg), host.loop)
    return await asyncio.wrap_future(future)
