"""Objects for the schedule tests: each run records itself in the object's SQL table."""

import time

from durable_objects import DurableObject


class Scheduled(DurableObject):
    """Schedules and queues its own methods; ``record`` and ``flaky`` are what runs.

    ``record(tag)`` inserts a row with the run's info; ``flaky(tag)`` raises while the
    run's retry_count is below the stored fail_times, and appends a line per attempt to the
    stored attempts_file (outside the shard, so attempts that rolled back count too).
    """

    class Meta:
        hibernate_after = 0.5  # so that the tests' schedules wake a hibernated object

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.booted = time.time()
        ctx.storage.sql.exec(
            "CREATE TABLE IF NOT EXISTS runs(n INTEGER PRIMARY KEY, tag TEXT, at REAL, "
            "schedule_id TEXT, kind TEXT, scheduled REAL, retry_count INTEGER, booted REAL)"
        )

    # -- what the tests call ---------------------------------------------------------------

    def configure(self, **options):
        self.ctx.storage.put_many(options)

    def plan(self, when, method, *args, id=None, tz=None):
        return self.ctx.schedule(when, method, *args, id=id, tz=tz)

    def plan_at(self, unix, method, *args, id=None):
        from datetime import UTC, datetime

        return self.ctx.schedule(datetime.fromtimestamp(unix, UTC), method, *args, id=id)

    def plan_every(self, every, method, *args, id=None):
        return self.ctx.schedule_every(every, method, *args, id=id)

    def plan_many(self, count, delay, spread=0.0):
        for n in range(count):
            self.ctx.schedule(delay + spread * n / max(1, count), "record", f"many-{n}")
        return count

    def plan_and_fail(self, when):
        self.ctx.schedule(when, "record", "rolled-back", id="doomed")
        self.ctx.enqueue("record", "rolled-back-task")
        raise RuntimeError("rolled back")

    def cancel(self, schedule_id):
        return self.ctx.cancel_schedule(schedule_id)

    def schedules(self):
        return self.ctx.get_schedules()

    def schedule_of(self, schedule_id):
        return self.ctx.get_schedule(schedule_id)

    def push(self, method, *args):
        return self.ctx.enqueue(method, *args)

    def push_many(self, count):
        return [self.ctx.enqueue("record", f"task-{n}") for n in range(count)]

    def queue(self):
        return self.ctx.get_queue()

    def runs(self, tag=None):
        query = "SELECT tag, at, schedule_id, kind, scheduled, retry_count, booted FROM runs"
        if tag is None:
            return self.ctx.storage.sql.exec(query + " ORDER BY n").to_array()
        return self.ctx.storage.sql.exec(query + " WHERE tag = ? ORDER BY n", tag).to_array()

    def info_outside_a_run(self):
        return self.ctx.schedule_info

    def wipe(self):
        self.ctx.storage.delete_all()

    def wake_time(self):
        from durable_objects.storage.schedules import wake_at

        return wake_at(self.ctx.storage._shard())

    def arm(self, when):
        self.ctx.storage.set_alarm(when)

    # -- what the schedules run ------------------------------------------------------------

    def record(self, tag, *extra):
        info = self.ctx.schedule_info
        self.ctx.storage.sql.exec(
            "INSERT INTO runs(tag, at, schedule_id, kind, scheduled, retry_count, booted) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            tag,
            time.time(),
            None if info is None else str(info.id),
            None if info is None else info.kind,
            None if info is None else info.scheduled_time,
            None if info is None else info.retry_count,
            self.booted,
        )

    async def call_then_flaky(self, other):
        """Call another object (which commits this event's writes so far), then flaky()."""
        await Scheduled.objects.get_by_name(other).record("called")
        await self.flaky("after-call")

    def snooze(self, seconds):
        """Set this run's own schedule again, by its id, for seconds from now."""
        self.ctx.schedule(seconds, "record", "snoozed", id=self.ctx.schedule_info.id)

    async def record_later(self, tag):
        import asyncio

        await asyncio.sleep(0.01)
        self.record(tag)

    async def flaky(self, tag):
        import asyncio

        storage = self.ctx.storage
        info = self.ctx.schedule_info
        attempts_file = storage.get("attempts_file")
        if attempts_file:
            with open(attempts_file, "a") as file:
                file.write(f"{time.time()} {info.retry_count} {tag}\n")
        slow = storage.get("slow", 0)
        if slow:
            await asyncio.sleep(slow)  # a kill lands mid-run
        if info.retry_count < storage.get("fail_times", 0):
            self.record(f"{tag}-failed")  # rolled back with the failure
            raise RuntimeError(f"failing on purpose (retry {info.retry_count})")
        self.record(tag)

    async def alarm(self, info):
        self.record("alarm")
