"""Running an object's alarm now, from outside the object (the admin, tests)."""

from durable_objects.events.errors import decode_exception
from durable_objects.runtime.calls import call

from .events import AlarmDelivery


async def run_alarm_now(cls, object_id):
    """Run the object's alarm now if one is set, whatever its time; True if one ran.

    The alarm is consumed as a delivery would consume it. If the handler raises, the
    failure is recorded and retried like any alarm's, and the exception is raised here.
    """
    result = await call(cls, object_id, AlarmDelivery(force=True, name=object_id.name))
    if result["ran"] and not result["ok"]:
        raise decode_exception(result["error"])
    return result["ran"]
