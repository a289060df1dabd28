import functools
import os
import time

from durable_objects import DurableObject


class BenchCounter(DurableObject):
    def noop(self):
        return 1

    def increment(self):
        value = self.ctx.storage.get("value", 0) + 1
        self.ctx.storage.put("value", value)
        return value

    def value(self):
        return self.ctx.storage.get("value", 0)


class BenchRoom(DurableObject):
    """The WebSocket benchmark's room: one SQLite insert per message, then a broadcast."""

    class Meta:
        hibernate_after = 1.0

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS messages(id INTEGER PRIMARY KEY, text)")

    def websocket_message(self, ws, message):
        self.ctx.storage.sql.exec("INSERT INTO messages(text) VALUES (?)", message)
        self.ctx.broadcast(message)


ALARMS_FIRED = []  # (name, started, scheduled) of the local backend's deliveries


@functools.cache
def _reports():
    """A queue of (list, JSON) reports that a thread pushes to Redis in batches, so the
    measuring does not hold the host's loop for a round trip per alarm."""
    import queue
    import threading

    import redis

    client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    reports = queue.SimpleQueue()

    def push():
        while True:
            batch = [reports.get()]
            while not reports.empty() and len(batch) < 500:
                batch.append(reports.get())
            with client.pipeline(transaction=False) as pipe:
                for key, item in batch:
                    pipe.rpush(key, item)
                pipe.execute()

    threading.Thread(target=push, daemon=True, name="bench-reports").start()
    return reports


def _report(key, report):
    import json

    _reports().put((key, json.dumps(report)))


class BenchAlarm(DurableObject):
    """The alarm benchmark's object: reports when its alarm handler started.

    To a list in this process (local backend), or to a Redis list (in a cluster), so the
    benchmark reads the figures without calling a thousand objects while they fire.
    """

    class Meta:
        hibernate_after = 3600

    def arm(self, when):
        self.ctx.storage.set_alarm(when)

    def alarm(self, info):
        started = time.time()
        self.ctx.storage.put("started", started)
        report = (self.ctx.id.name, started, info.scheduled_time)
        if os.environ.get("BENCH_REDIS_URL"):
            _report("bench:alarms", report)
        else:
            ALARMS_FIRED.append(report)


class BenchArchive(DurableObject):
    """The backup benchmark's object: `mib` MiB of random blobs and a few entries."""

    def fill(self, mib):
        sql = self.ctx.storage.sql
        sql.exec("CREATE TABLE IF NOT EXISTS blobs(id INTEGER PRIMARY KEY, data BLOB)")
        sql.exec(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO blobs(data) SELECT randomblob(1048576) FROM n",
            mib,
        )
        self.ctx.storage.put_many({f"key-{n}": n for n in range(100)})
        return self.ctx.storage.sql.database_size

    def drop_one(self):
        self.ctx.storage.sql.exec("DELETE FROM blobs WHERE id = (SELECT max(id) FROM blobs)")

    async def bookmark(self):
        return await self.ctx.storage.get_current_bookmark()

    def count(self):
        return self.ctx.storage.sql.exec("SELECT count(*) AS n FROM blobs").one()["n"]


class BenchHttpCounter(DurableObject):
    """The web benchmark's object: one durable SQL upsert per call or request.

    The same work as the side-by-side harness's Counter (../shared/sidebyside/).
    """

    class Meta:
        hibernate_after = 3600

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS kv(k TEXT PRIMARY KEY, v INTEGER)")

    def increment(self):
        return self.ctx.storage.sql.exec(
            "INSERT INTO kv VALUES('c', 1) ON CONFLICT(k) DO UPDATE SET v = v + 1 RETURNING v"
        ).one()["v"]

    def fetch(self, request):
        from django.http import HttpResponse

        return HttpResponse(str(self.increment()))


SCHEDULES_RAN = []  # (tag, started, scheduled) of the local backend's scheduled runs


class BenchSchedule(DurableObject):
    """The schedule benchmark's object: its runs report when they started, as BenchAlarm's."""

    class Meta:
        hibernate_after = 3600

    def plan(self, times, prefix):
        for n, when in enumerate(times):
            tag = f"{prefix}-{n}"
            self.ctx.schedule(when - time.time(), "ran", tag, id=tag)  # again: replaced
        return len(times)

    def ran(self, tag):
        started = time.time()
        report = (tag, started, self.ctx.schedule_info.scheduled_time)
        if os.environ.get("BENCH_REDIS_URL"):
            _report("bench:schedules", report)
        else:
            SCHEDULES_RAN.append(report)

    def noop(self):
        pass


class BenchEcho(DurableObject):
    """The web benchmark's echo: each message back to its socket, no storage."""

    class Meta:
        hibernate_after = 3600

    def websocket_message(self, ws, message):
        ws.send(message)
