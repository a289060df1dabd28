"""Helpers for users' own tests, like Cloudflare's vitest-pool-workers helpers."""

from durable_objects.events.calls import RunInObject

from ..conf import get_config
from ..ids import DurableObjectId
from ..runtime.calls import call, on_host_loop
from ..runtime.lifecycle import current_host, get_host
from ..storage.files import shard_files

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
    from ..alarms.control import run_alarm_now

    return await run_alarm_now(stub._namespace.model, stub.id)


async def evict(stub):
    """Drop the object's instance as hibernation would, after its pending events."""
    host = get_host()
    await on_host_loop(host, host.evict, [stub.id.key])


async def evict_all():
    """Drop every live instance of this process."""
    host = get_host()
    await on_host_loop(host, host.evict)


def is_active(stub):
    """Return True if the object has a live instance in this process."""
    host = current_host()
    if host is None:
        return False
    activation = host.activations.get(stub.id.key)
    return activation is not None and activation.instance is not None


def list_ids(cls):
    """Return the IDs of every object of cls with a shard under the storage root, sorted."""
    label = cls._meta.label
    ids = sorted(shard.hex_id for shard in shard_files(get_config()["STORAGE_ROOT"], label))
    return [DurableObjectId(label, hex_id) for hex_id in ids]
