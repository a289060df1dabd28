"""What an alarm handler receives, the retry schedule, and the alarm row for inspection."""

from durable_objects.conf import get_config
from durable_objects.events.base import current_event
from durable_objects.storage import alarm as alarm_row


class AlarmInfo:
    """The ``info`` an ``alarm(info)`` handler receives."""

    __slots__ = ("retry_count", "scheduled_time")

    def __init__(self, retry_count, scheduled_time):
        self.retry_count = retry_count  # failed attempts at this alarm before this one
        self.scheduled_time = scheduled_time  # the time that was set, UNIX seconds

    @property
    def is_retry(self):
        return self.retry_count > 0

    def __repr__(self):
        return f"<AlarmInfo retry_count={self.retry_count}>"


def retry_delay(retry_count):
    """Seconds before the retry that follows failure number retry_count + 1.

    ALARM_RETRY_BASE doubled per failure: 2, 4, 8, 16, 32, 64 s by default.
    """
    return get_config()["ALARM_RETRY_BASE"] * 2**retry_count


def alarm_status(ctx):
    """The object's alarm row as a dict (see storage/alarm.py), or None; inside an event."""
    running = current_event.get()
    if running is None or running[0].ctx is not ctx:
        raise RuntimeError(
            "alarm_status(ctx) reads the alarm row inside one of the object's events."
        )
    shard = running[0].shard_for_event(create=False)
    return None if shard is None else alarm_row.read_row(shard)
