"""Object classes for the cluster tests."""

import asyncio
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
