"""Object classes for the cluster tests."""

import asyncio
import json
import os

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
