"""Object classes for the cluster tests."""

import asyncio
import json
import os
import time

from durable_objects import DurableObject


class Tally(DurableObject):
    """A counter that records, durably, which process constructed it each time."""

    class Meta:
        hibernate_after = 3600

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.put("constructed", [*ctx.storage.get("constructed", []), os.getpid()])

    def increment(self):
        value = self.ctx.storage.get("value", 0) + 1
        self.ctx.storage.put("value", value)
        return {"value": value, "pid": os.getpid()}

    def state(self):
        return {
            "value": self.ctx.storage.get("value", 0),
            "constructed": self.ctx.storage.get("constructed", []),
            "pid": os.getpid(),
        }

    async def slow_increment(self, seconds):
        """Read, wait, then write: the write comes after a pause of the whole process."""
        value = self.ctx.storage.get("value", 0)
        await asyncio.sleep(seconds)
        self.ctx.storage.put("value", value + 1)
        return {"value": value + 1, "pid": os.getpid()}


class Lobby(DurableObject):
    """A chat room whose messages carry an id from the client, stored once each."""

    class Meta:
        hibernate_after = 3600

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec(
            "CREATE TABLE IF NOT EXISTS messages(seq INTEGER PRIMARY KEY, mid TEXT UNIQUE)"
        )

    def fetch(self, request):
        self.ctx.accept_websocket(request.websocket)
        for row in self.ctx.storage.sql.exec("SELECT seq, mid FROM messages ORDER BY seq"):
            request.websocket.send(json.dumps(row))

    def websocket_message(self, ws, message):
        mid = json.loads(message)["mid"]
        cursor = self.ctx.storage.sql.exec(
            "INSERT INTO messages(mid) VALUES (?) ON CONFLICT(mid) DO NOTHING RETURNING seq, mid",
            mid,
        )
        for row in cursor:  # a message sent again after a reconnect is stored once
            self.ctx.broadcast(json.dumps({**row, "pid": os.getpid()}))


class Holdings(DurableObject):
    """A user table, key-value data and an alarm: what must move between machines intact."""

    class Meta:
        hibernate_after = 3600

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec(
            "CREATE TABLE IF NOT EXISTS entries(id INTEGER PRIMARY KEY, text TEXT NOT NULL)"
        )

    def add(self, text, alarm_in=None):
        self.ctx.storage.sql.exec("INSERT INTO entries(text) VALUES (?)", text)
        self.ctx.storage.put(f"entry:{text}", {"text": text, "pid": os.getpid()})
        if alarm_in is not None:
            self.ctx.storage.set_alarm(time.time() + alarm_in)
        return {"pid": os.getpid()}

    def alarm(self, info):
        fired = self.ctx.storage.get("fired", [])
        self.ctx.storage.put("fired", [*fired, os.getpid()])

    def state(self):
        rows = self.ctx.storage.sql.exec("SELECT text FROM entries ORDER BY id").to_array()
        return {
            "entries": [row["text"] for row in rows],
            "kv": sorted(key for key, _ in self.ctx.storage.list(prefix="entry:").items()),
            "alarm": self.ctx.storage.get_alarm(),
            "fired": self.ctx.storage.get("fired", []),
            "pid": os.getpid(),
        }
