"""``ctx.schedule()`` and the rest: many schedules and a durable queue on the one alarm.

The methods write the rows of ``storage/schedules.py`` in the current event's transaction
and mark the alarm changed, so the commit tells the alarm backend the object's new wake
time. Delivery is ``alarms/schedules.py``. See docs/topics/schedules.md.
"""

import time

from durable_objects import serialization
from durable_objects.conf import get_config
from durable_objects.events.base import current_event
from durable_objects.storage import schedules as rows


class ScheduleInfo:
    """What a scheduled run or queued task is: ``ctx.schedule_info`` while it runs."""

    __slots__ = ("id", "kind", "retry_count", "scheduled_time")

    def __init__(self, id, kind, scheduled_time, retry_count):
        self.id = id  # the schedule's id, or the task's sequence number for "queue"
        self.kind = kind  # "delayed", "scheduled", "cron", "interval" or "queue"
        self.scheduled_time = scheduled_time  # the run's time (UNIX seconds), before retries
        self.retry_count = retry_count  # failed attempts at this run before this one

    @property
    def is_retry(self):
        return self.retry_count > 0

    def __repr__(self):
        return f"<ScheduleInfo {self.kind} {self.id!r} retry_count={self.retry_count}>"


def describe(row):
    """A schedule row as the plain dict ``get_schedules()`` returns (serializable)."""
    return {
        "id": row["id"],
        "kind": row["kind"],
        "method": row["method"],
        "args": serialization.loads(row["args"])[0],
        "cron": row["cron"],
        "tz": row["tz"],
        "interval": row["interval"],
        "time": row["scheduled_at"],
        "due_at": row["due_at"],
        "retry_count": row["retry_count"],
        "runs": row["runs"],
        "created_at": row["created_at"],
        "last_run_at": row["last_run_at"],
        "last_error": row["last_error"],
    }


def describe_task(row):
    """A queue row as the plain dict ``get_queue()`` returns."""
    return {
        "seq": row["seq"],
        "method": row["method"],
        "args": serialization.loads(row["args"])[0],
        "enqueued_at": row["enqueued_at"],
        "due_at": row["due_at"],
        "retry_count": row["retry_count"],
        "last_error": row["last_error"],
    }


class ScheduleStateMixin:
    """The schedule and queue methods of ``ctx`` (DurableObjectState)."""

    def schedule(self, when, method, *args, id=None, tz=None):
        """Run ``method(*args)`` at ``when``; return the schedule's id.

        ``when`` is seconds (or a timedelta) from now, an aware datetime, or a cron
        expression read in ``tz`` (a zone name; Django's TIME_ZONE by default). The same
        ``id`` replaces that schedule. Takes effect when the event commits.
        """
        kind, scheduled_at, cron, zone = rows.first_run(when, tz=tz)
        return self._put_schedule(id, kind, method, args, scheduled_at, cron=cron, tz=zone)

    def schedule_every(self, every, method, *args, id=None):
        """Run ``method(*args)`` every ``every`` seconds, the first run one interval from now."""
        seconds = rows.interval_seconds(every)
        return self._put_schedule(
            id, "interval", method, args, time.time() + seconds, every=seconds
        )

    def get_schedules(self):
        """Every schedule of the object as a dict, the next due first."""
        shard = self._activation.shard_for_event(create=False)
        return [] if shard is None else [describe(row) for row in rows.read_all(shard)]

    def get_schedule(self, id):
        """The schedule with this id as a dict, or None."""
        rows.check_id(id)
        shard = self._activation.shard_for_event(create=False)
        row = None if shard is None else rows.read(shard, id)
        return None if row is None else describe(row)

    def cancel_schedule(self, id):
        """Delete the schedule (and its pending retries); True if it existed."""
        rows.check_id(id)
        shard = self._activation.shard_for_event(create=False)
        if shard is None or not rows.delete(shard, id):
            return False
        self._activation.alarm_changed = True
        return True

    def enqueue(self, method, *args):
        """Queue ``method(*args)`` to run after this event commits, in order; return its seq.

        Each task runs as its own event, retried like an alarm if it raises; the tasks
        behind it wait (first in, first out).
        """
        payload = self._payload(method, args, "enqueue()")
        shard = self._activation.shard_for_event()
        limit = get_config()["QUEUE_MAX_LENGTH"]
        if rows.queue_length(shard) >= limit:
            raise ValueError(
                f"The queue of {self.id!r} holds {limit} tasks, the limit "
                "(QUEUE_MAX_LENGTH); let it drain before enqueueing more."
            )
        seq = rows.push(shard, method, payload)
        self._activation.alarm_changed = True
        return seq

    def get_queue(self):
        """The tasks waiting in the queue as dicts, the next first."""
        shard = self._activation.shard_for_event(create=False)
        return [] if shard is None else [describe_task(row) for row in rows.read_queue(shard)]

    @property
    def schedule_info(self):
        """The ScheduleInfo of the scheduled run or queued task running now, or None."""
        running = current_event.get()
        if running is None or running[0] is not self._activation:
            return None
        return getattr(running[1], "info", None)

    # -- helpers -------------------------------------------------------------------------

    def _put_schedule(self, schedule_id, kind, method, args, scheduled_at, **fields):
        if schedule_id is None:
            schedule_id = rows.new_id()
        else:
            rows.check_id(schedule_id)
        payload = self._payload(method, args, "schedule()")
        shard = self._activation.shard_for_event()
        limit = get_config()["SCHEDULES_MAX_PER_OBJECT"]
        if rows.count(shard) >= limit and not rows.exists(shard, schedule_id):
            raise ValueError(
                f"{self.id!r} has {limit} schedules, the limit (SCHEDULES_MAX_PER_OBJECT); "
                "cancel some, or reuse an id to replace one."
            )
        every = fields.get("every")
        rows.put(
            shard,
            schedule_id=schedule_id,
            kind=kind,
            method=method,
            args=payload,
            scheduled_at=scheduled_at,
            cron=fields.get("cron"),
            tz=fields.get("tz"),
            every=every,
        )
        self._activation.alarm_changed = True
        return schedule_id

    def _payload(self, method, args, what):
        cls = self._activation.cls
        check_method(cls, method, what)
        payload = serialization.dumps_arguments(
            list(args), {}, describe=lambda index: cls.objects.argument_label(method, index)
        )
        limit = get_config()["SCHEDULE_MAX_ARGS_SIZE"]
        if len(payload) > limit:
            raise ValueError(
                f"The arguments of {what} for {method}() are {len(payload)} bytes serialized; "
                f"the limit is {limit} bytes (SCHEDULE_MAX_ARGS_SIZE). Store large data in "
                "the object's storage and pass its key."
            )
        return payload


def check_method(cls, method, what="schedule()"):
    """Refuse, with a ValueError, a method that a schedule or task could not run."""
    if not isinstance(method, str):
        raise TypeError(f"{what} takes the method's name as a str, not {type(method).__name__}.")
    if method in cls.objects.reserved:  # the handlers, and DurableObject's own names
        raise ValueError(
            f"{what}: {method}() is a handler of {cls.__name__} (or a name DurableObject "
            "reserves), not a method to schedule; schedule a public method of your own (it "
            "may call the handler's code)."
        )
    if method not in cls.objects.methods:
        raise ValueError(
            f"{what}: {cls.__name__} has no public method {method[:100]!r} (a schedule runs "
            "a public method of the object, named without a leading underscore)."
        )
