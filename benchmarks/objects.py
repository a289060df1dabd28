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


class BenchAlarm(DurableObject):
    """The alarm benchmark's object: records when its alarm handler started."""

    class Meta:
        hibernate_after = 3600

    def arm(self, when):
        self.ctx.storage.set_alarm(when)

    def alarm(self, info):
        self.ctx.storage.put("started", time.time())
        self.ctx.storage.put("scheduled", info.scheduled_time)

    def fired(self):
        return self.ctx.storage.get_many(["started", "scheduled"])
