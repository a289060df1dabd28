"""Delivering schedules and queued tasks: the events that run them, and the pump.

The alarm backend delivers the object's wake time like any alarm (``AlarmDelivery``). The
delivery pumps (``pump``): every schedule due and the queue's head become events of
their own, queued at the object behind the delivery, one ``ScheduleRun`` or ``TaskRun``
each. A run checks its row is still the one that was due (so a duplicate or stale run does
nothing), calls the method, then updates the row (deletes a one-shot schedule or the
task, moves a repeating schedule to its next time); if the method raises, the event rolls
back and a ``RunRetry`` records the failure and sets the retry's time, or
drops the run after ALARM_MAX_RETRIES, as an alarm's retry does. Each run pumps again when
it ends, so the queue drains in order and schedules due together all run.

The runs this activation has queued are remembered in memory (``in_flight``) so a pump
does not queue one twice. While runs are in flight the backend is not told about wake
times already past: the runs themselves pump what is due, and the last of them tells the
backend the next wake time once it is in the future.
"""

import logging
import time
import weakref

from durable_objects import serialization
from durable_objects.conf import get_config
from durable_objects.events.base import Event
from durable_objects.runtime.schedules import ScheduleInfo
from durable_objects.storage import schedules as rows

from .state import retry_delay

logger = logging.getLogger("durable_objects.alarms")

PUMP_LIMIT = 1000  # most schedule runs one activation queues at once

_in_flight = weakref.WeakKeyDictionary()  # activation -> InFlight


class InFlight:
    """The runs an activation has queued and not yet finished."""

    __slots__ = ("schedules", "tasks")

    def __init__(self):
        self.schedules = set()  # schedule ids
        self.tasks = set()  # queue sequence numbers (one at a time: the head)

    def __len__(self):
        return len(self.schedules) + len(self.tasks)

    def discard(self, key):
        kind, ident = key
        (self.schedules if kind == "s" else self.tasks).discard(ident)


def in_flight(activation):
    """The InFlight of this activation's queued runs."""
    flight = _in_flight.get(activation)
    if flight is None:
        flight = _in_flight[activation] = InFlight()
    return flight


def pump(activation, shard, now):
    """Queue a run for each schedule due and for the queue's head; return how many are in
    flight afterwards (0: nothing due is waiting to run).

    Schedules are pumped a batch at a time, only once the previous batch has finished: a
    pump never reads the rows of runs already queued, so draining n due schedules costs
    O(n) reads, not O(n * batch).
    """
    flight = in_flight(activation)
    if not flight.schedules:
        for schedule_id, due_at, retry_count, revision in rows.due(shard, now, PUMP_LIMIT):
            flight.schedules.add(schedule_id)
            run = ScheduleRun(schedule_id, due_at, retry_count, revision)
            activation.host.submit(activation, run)
    if not flight.tasks:
        task = rows.head(shard)
        if task is not None and task["due_at"] <= now:
            flight.tasks.add(task["seq"])
            activation.host.submit(activation, TaskRun(task["seq"], task["retry_count"]))
    return len(flight)


def settle(activation, shard, key):
    """After a run or its retry: forget it, pump what is due, tell the backend if needed."""
    flight = in_flight(activation)
    flight.discard(key)
    now = time.time()
    pump(activation, shard, now)
    wake = rows.wake_at(shard)
    if wake != activation.alarm_due and (wake is None or wake > now or not flight):
        activation.alarm_changed = True


class _Run(Event):
    """The part of a scheduled run and a queued task they share."""

    __slots__ = ("attempt", "info")

    timed = False  # nobody waits on it; EVENT_DEADLINE still bounds it
    local_only = True  # queued by the pump, for this activation

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attempt = None  # set once the method is about to run
        self.info = None  # the ScheduleInfo of ctx.schedule_info

    async def _call(self, instance, method, payload):
        args, kwargs = serialization.loads(payload)
        result = getattr(instance, method)(*args, **kwargs)
        if hasattr(result, "__await__"):
            await result

    def encode(self, result):
        return result

    def released(self, outcome, activation):
        """A method that raised: record the failure (retry or drop) in an event of its own."""
        ok, error = outcome
        if ok or self.attempt is None:
            return outcome
        retry = RunRetry(self.key, self.attempt, f"{error['type']}: {error['message']}"[:2000])
        if activation.closed:
            activation.host.dispatch(activation.cls, activation.id, retry)
        else:
            activation.host.submit(activation, retry)
        return outcome


class ScheduleRun(_Run):
    """Run one schedule's method if the schedule is still due as the pump saw it."""

    __slots__ = ("due_at", "retry_count", "revision", "schedule_id")

    kind = "schedule_run"

    def __init__(self, schedule_id, due_at, retry_count, revision, **kwargs):
        super().__init__(**kwargs)
        self.schedule_id = schedule_id
        self.due_at = due_at
        self.retry_count = retry_count
        self.revision = revision  # the row's token: a replaced schedule has another

    @property
    def key(self):
        return ("s", self.schedule_id)

    def invoke(self, instance, activation):
        return self._run(instance, activation)

    async def _run(self, instance, activation):
        shard = activation.shard_for_event()
        row = rows.read(shard, self.schedule_id)
        if not self._is_current(row):
            settle(activation, shard, self.key)  # cancelled, replaced or run already
            return None
        self.attempt = (self.revision, self.due_at, self.retry_count)
        self.info = ScheduleInfo(row["id"], row["kind"], row["scheduled_at"], row["retry_count"])
        await self._call(instance, row["method"], row["args"])
        # After the method, so that a method that commits midway (a call to another object)
        # and then raises still finds its row as it was, for the retry; a method that
        # cancelled or replaced its own schedule meanwhile has the last word.
        shard = activation.shard_for_event()
        if self._is_current(rows.read(shard, self.schedule_id)):
            now = time.time()
            following = rows.next_after_run(row, now)
            if following is None:
                rows.delete(shard, self.schedule_id)
            else:
                rows.update(
                    shard,
                    self.schedule_id,
                    scheduled_at=following,
                    due_at=following,
                    retry_count=0,
                    runs=row["runs"] + 1,
                    last_run_at=now,
                )
        settle(activation, shard, self.key)
        return None

    def _is_current(self, row):
        """True if row is the schedule as the pump saw it (not replaced, not run since)."""
        return row is not None and (row["token"], row["due_at"], row["retry_count"]) == (
            self.revision,
            self.due_at,
            self.retry_count,
        )

    def __repr__(self):
        return f"<ScheduleRun {self.schedule_id!r}>"


class TaskRun(_Run):
    """Run the queue's head task if it is still the one the pump saw."""

    __slots__ = ("retry_count", "seq")

    kind = "task_run"

    def __init__(self, seq, retry_count, **kwargs):
        super().__init__(**kwargs)
        self.seq = seq
        self.retry_count = retry_count

    @property
    def key(self):
        return ("q", self.seq)

    def invoke(self, instance, activation):
        return self._run(instance, activation)

    async def _run(self, instance, activation):
        shard = activation.shard_for_event()
        row = rows.read_task(shard, self.seq)
        if row is None or row["retry_count"] != self.retry_count:
            settle(activation, shard, self.key)
            return None
        self.attempt = (None, row["due_at"], self.retry_count)
        self.info = ScheduleInfo(row["seq"], "queue", row["enqueued_at"], row["retry_count"])
        await self._call(instance, row["method"], row["args"])
        shard = activation.shard_for_event()  # after the method, as for a schedule
        rows.pop(shard, self.seq)
        settle(activation, shard, self.key)
        return None

    def __repr__(self):
        return f"<TaskRun {self.seq}>"


class RunRetry(Event):
    """After a run's method raised: count the failure and set the retry's time, or drop."""

    __slots__ = ("attempt", "error", "run_key")

    kind = "schedule_retry"
    timed = False
    local_only = True

    def __init__(self, run_key, attempt, error, **kwargs):
        super().__init__(**kwargs)
        self.run_key = run_key
        self.attempt = attempt  # (revision or None, due_at, retry_count) of the failed run
        self.error = error

    def invoke(self, instance, activation):
        shard = activation.shard_for_event()
        kind, ident = self.run_key
        revision, due_at, retry_count = self.attempt
        now = time.time()
        failures = retry_count + 1
        give_up = failures > get_config()["ALARM_MAX_RETRIES"]
        if kind == "s":
            row = rows.read(shard, ident)
            if row is not None and (row["token"], row["due_at"], row["retry_count"]) == (
                revision,
                due_at,
                retry_count,
            ):
                self._schedule_failed(shard, row, failures, give_up, now)
        else:
            row = rows.read_task(shard, ident)
            if row is not None and row["retry_count"] == retry_count:
                self._task_failed(shard, row, failures, give_up, now)
        settle(activation, shard, self.run_key)

    def _schedule_failed(self, shard, row, failures, give_up, now):
        errors = {"last_error": self.error, "last_error_at": now}
        if not give_up:
            delay = retry_delay(failures - 1)
            rows.update(shard, row["id"], retry_count=failures, due_at=now + delay, **errors)
            return
        logger.warning(
            "The run of schedule %r (%s()) failed %d times and was dropped: %s",
            row["id"],
            row["method"],
            failures,
            self.error,
        )
        following = rows.next_after_run(row, now)
        if following is None:
            rows.delete(shard, row["id"])
        else:  # a repeating schedule goes on at its next time
            rows.update(
                shard,
                row["id"],
                scheduled_at=following,
                due_at=following,
                retry_count=0,
                **errors,
            )

    def _task_failed(self, shard, row, failures, give_up, now):
        if not give_up:
            rows.update_task(
                shard,
                row["seq"],
                retry_count=failures,
                due_at=now + retry_delay(failures - 1),
                last_error=self.error,
                last_error_at=now,
            )
            return
        logger.warning(
            "Queued task %d (%s()) failed %d times and was dropped: %s",
            row["seq"],
            row["method"],
            failures,
            self.error,
        )
        rows.pop(shard, row["seq"])

    def __repr__(self):
        return f"<RunRetry {self.run_key} after failure {self.attempt[2] + 1}>"
