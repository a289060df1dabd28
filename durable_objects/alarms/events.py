"""Alarm events: a delivery, and the retry bookkeeping after a handler failed.

A delivery is idempotent: it runs ``alarm()`` only if the stored alarm is due (or, with
``force``, set at all), so a duplicate or stale job finds nothing to do. The handler runs
as any event: if it raises, its writes roll back and its messages are dropped; then an
``AlarmRetry`` event records the failure and schedules the retry (or abandons the alarm
after ALARM_MAX_RETRIES), in the object's own transaction.
"""

import inspect
import logging
import time

from durable_objects import serialization
from durable_objects.conf import get_config
from durable_objects.events.base import Event, WireField
from durable_objects.storage import alarm as alarm_row

from . import schedules
from .state import AlarmInfo, retry_delay

logger = logging.getLogger("durable_objects.alarms")


class AlarmDelivery(Event):
    """Run the object's alarm if it is due; the outcome says whether it ran."""

    __slots__ = ("attempt", "force")

    kind = "alarm"
    wire_fields = {"force": WireField(bool, required=False)}

    def __init__(self, *, force=False, **kwargs):
        super().__init__(**kwargs)
        self.force = force
        self.attempt = None  # (scheduled_at, due_at, retry_count) once the handler runs

    def to_wire(self):
        return {"force": self.force}

    def invoke(self, instance, activation):
        return self._deliver(instance, activation)

    async def _deliver(self, instance, activation):
        shard = activation.shard_for_event(create=False)
        if shard is None:
            return {"ran": False, "due_at": None}
        now = time.time()
        # The schedules and the queue ride on the alarm: what is due runs in events of its
        # own, after this one; while they are in flight they tell the backend what's next.
        in_flight = schedules.pump(activation, shard, now)
        row = alarm_row.read_row(shard)
        due = row["due_at"] if row is not None else None
        if due is None or (due > now and not self.force):
            wake = None if in_flight else schedules.rows.wake_at(shard)
            return {"ran": False, "due_at": wake, "runs": in_flight}
        handler = getattr(instance, "alarm", None)
        if handler is None:
            raise TypeError(f"{type(instance).__name__} has an alarm set but no alarm() handler.")
        self.attempt = (row["scheduled_at"], due, row["retry_count"])
        # Inside the handler get_alarm() is None unless the handler sets a new alarm.
        alarm_row.write(shard, scheduled_at=None, due_at=None)
        activation.alarm_changed = True
        result = handler(AlarmInfo(row["retry_count"], row["scheduled_at"]))
        if inspect.isawaitable(result):
            await result
        # The handler may have committed (an outgoing call): write in the current scope.
        alarm_row.write(activation.shard_for_event(), retry_count=0, last_fired_at=now)
        return {"ran": True, "ok": True, "late_by": max(0.0, now - due), "runs": in_flight}

    def encode(self, result):
        return serialization.dumps(result)

    def decode(self, value):
        return serialization.loads(value)

    def released(self, outcome, activation):
        """A handler that raised: record the failure (retry or abandon), report it ran."""
        ok, error = outcome
        if ok or self.attempt is None:
            return outcome
        scheduled_at, due_at, retry_count = self.attempt
        retry = AlarmRetry(
            scheduled_at, due_at, retry_count, f"{error['type']}: {error['message']}"[:2000]
        )
        host = activation.host
        if activation.closed:
            host.dispatch(activation.cls, activation.id, retry)
        else:
            host.submit(activation, retry)
        return (True, self.encode({"ran": True, "ok": False, "error": error}))


class AlarmRetry(Event):
    """After a failed handler: count the failure and set the retry's time, or abandon."""

    __slots__ = ("due_at", "error", "retry_count", "scheduled_at")

    kind = "alarm_retry"
    timed = False
    local_only = True  # queued by the process where the handler failed, for that activation

    def __init__(self, scheduled_at, due_at, retry_count, error, **kwargs):
        super().__init__(**kwargs)
        self.scheduled_at = scheduled_at
        self.due_at = due_at
        self.retry_count = retry_count
        self.error = error

    def invoke(self, instance, activation):
        shard = activation.shard_for_event()
        row = alarm_row.read_row(shard)
        if (
            row is None
            or row["retry_count"] != self.retry_count
            or row["due_at"] not in (None, self.due_at)
            or row["scheduled_at"] not in (None, self.scheduled_at)
        ):
            return  # the alarm was set or deleted since the failure: that change stands
        now = time.time()
        failures = self.retry_count + 1
        values = {"retry_count": failures, "last_error": self.error, "last_error_at": now}
        if failures > get_config()["ALARM_MAX_RETRIES"]:
            logger.warning(
                "The alarm of %s failed %d times and was abandoned: %s",
                activation.id,
                failures,
                self.error,
            )
            values.update(scheduled_at=None, due_at=None, abandoned_at=now)
        else:
            values.update(
                scheduled_at=self.scheduled_at, due_at=now + retry_delay(self.retry_count)
            )
        alarm_row.write(shard, **values)
        activation.alarm_changed = True

    def __repr__(self):
        return f"<AlarmRetry after failure {self.retry_count + 1}>"
