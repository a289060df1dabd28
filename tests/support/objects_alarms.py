"""Objects for the alarm tests: each records its deliveries in its own SQL table."""

import asyncio
import time

from durable_objects import DurableObject


class Alarmed(DurableObject):
    """An alarm that records each successful run; optionally fails, re-arms or is slow.

    ``configure()`` stores: fail_times (the handler raises while retry_count is below it),
    rearm (how many more times the handler sets a new alarm, every rearm_after seconds),
    slow (seconds the handler sleeps) and attempts_file (a file outside the shard that
    gets a line per attempt, so attempts that rolled back are counted too).
    """

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec(
            "CREATE TABLE IF NOT EXISTS fired(n INTEGER PRIMARY KEY, at REAL, scheduled REAL,"
            " retry_count INTEGER, alarm_inside REAL)"
        )

    def configure(self, **options):
        self.ctx.storage.put_many(options)

    def arm(self, when):
        self.ctx.storage.set_alarm(when)
        return self.ctx.storage.get_alarm()

    def arm_and_fail(self, when):
        self.ctx.storage.set_alarm(when)
        raise RuntimeError("rolled back")

    def cancel(self):
        self.ctx.storage.delete_alarm()

    def wipe(self):
        self.ctx.storage.delete_all()

    def alarm_time(self):
        return self.ctx.storage.get_alarm()

    def fired(self):
        return self.ctx.storage.sql.exec("SELECT * FROM fired ORDER BY n").to_array()

    def status(self):
        from durable_objects.alarms.state import alarm_status

        return alarm_status(self.ctx)

    async def alarm(self, info):
        storage = self.ctx.storage
        started = time.time()
        attempts_file = storage.get("attempts_file")
        if attempts_file:
            with open(attempts_file, "a") as file:
                file.write(f"{started} {info.retry_count}\n")
        inside = storage.get_alarm()
        slow = storage.get("slow", 0)
        if slow:
            await asyncio.sleep(slow)
        if info.retry_count < storage.get("fail_times", 0):
            storage.sql.exec("INSERT INTO fired(at, retry_count) VALUES (?, -1)", started)
            raise RuntimeError(f"failing on purpose (retry {info.retry_count})")
        storage.sql.exec(
            "INSERT INTO fired(at, scheduled, retry_count, alarm_inside) VALUES (?, ?, ?, ?)",
            started,
            info.scheduled_time,
            info.retry_count,
            inside,
        )
        rearm = storage.get("rearm", 0)
        if rearm:
            storage.put("rearm", rearm - 1)
            storage.set_alarm(time.time() + storage.get("rearm_after", 0.2))


class NoHandler(DurableObject):
    def arm(self, when):
        self.ctx.storage.set_alarm(when)
