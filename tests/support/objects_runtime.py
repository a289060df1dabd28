"""Object classes for the runtime tests (imported by them; label from the tests app)."""

import asyncio
import contextlib

from durable_objects import DurableObject


class SeatTaken(Exception):
    """A domain error that crosses to the caller with its type."""


class Picky(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


class Failing(DurableObject):
    def domain_error(self):
        raise SeatTaken("seat 3A is taken")

    def odd_error(self):
        raise Picky(1, object())

    def key_error(self):
        return {}["missing"]


class Slow(DurableObject):
    async def nap(self, seconds):
        await asyncio.sleep(seconds)
        return "awake"

    def quick(self):
        return "quick"


class BrokenGate(DurableObject):
    constructions = 0

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        type(self).constructions += 1
        if ctx.storage.get("fail_gate", True):
            ctx.block_concurrency_while(self._fail)

    async def _fail(self):
        raise RuntimeError("gate failed")

    def hello(self):
        return "hello"


class FailingConstructor(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.put("constructed", True)
        raise RuntimeError("constructor failed")

    def hello(self):
        return "unreachable"


class AtomicCaller(DurableObject):
    async def call_inside_atomic(self):
        from tests.support.objects import Relay

        with self.ctx.storage.atomic():
            self.ctx.storage.put("x", 1)
            await Relay.objects.get_by_name("peer").ping()


class Order(DurableObject):
    """Records the order in which events arrive."""

    async def record(self, item):
        log = self.ctx.storage.get("log", [])
        await asyncio.sleep(0)
        log.append(item)
        self.ctx.storage.put("log", log)
        return len(log)

    def log(self):
        return self.ctx.storage.get("log", [])


class ThreadSensitive(DurableObject):
    """Awaits asgiref's thread-sensitive sync_to_async, as code using the ORM does."""

    async def blocking_work(self):
        from asgiref.sync import sync_to_async

        return await sync_to_async(lambda: "done")()


class Catcher(DurableObject):
    def abort_and_catch(self):
        self.ctx.storage.put("written", True)
        with contextlib.suppress(Exception):
            self.ctx.abort("caught")
        return "swallowed"

    def read(self):
        return self.ctx.storage.get("written")

    def big_result(self, size):
        return "x" * size
