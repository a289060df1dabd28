"""Durable object classes the test suite calls (autodiscovered, like a user's app)."""

import asyncio

from django.http import HttpResponse, JsonResponse

from durable_objects import DurableObject


class Counter(DurableObject):
    """Counts in the key-value store; records how often it was constructed."""

    constructions = 0

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        type(self).constructions += 1
        self.memory = []

    def increment(self, by=1):
        value = self.ctx.storage.get("value", 0) + by
        self.ctx.storage.put("value", value)
        return value

    async def slow_increment(self, by=1):
        value = self.ctx.storage.get("value", 0)
        await asyncio.sleep(0.001)
        self.ctx.storage.put("value", value + by)
        return value + by

    def value(self):
        return self.ctx.storage.get("value", 0)

    def increment_then_fail(self):
        self.ctx.storage.put("value", self.ctx.storage.get("value", 0) + 1)
        self.ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS scratch(x)")
        raise ValueError("failed after writing")

    def remember(self, item):
        self.memory.append(item)
        return list(self.memory)

    def echo(self, *args, **kwargs):
        return [list(args), kwargs]

    def my_name(self):
        return self.ctx.id.name

    def my_id(self):
        return str(self.ctx.id)

    def nothing(self):
        return None

    def unserializable_result(self):
        self.ctx.storage.put("value", -1)
        return object()

    def abort_after_write(self):
        self.ctx.storage.put("value", 999)
        self.ctx.abort("test")

    def fetch(self, request):
        if request.method == "POST":
            self.ctx.storage.put("body", request.body.decode())
        response = JsonResponse(
            {
                "method": request.method,
                "path": request.path,
                "query": request.GET.get("q"),
                "header": request.headers.get("X-Test"),
                "body": self.ctx.storage.get("body"),
            },
            status=201,
        )
        response["X-From-Object"] = "yes"
        response.set_cookie("seen", "1")
        return response


class Relay(DurableObject):
    """Calls other objects, to test call chains and reentrancy."""

    def ping(self):
        return "pong"

    async def ask_back(self, name):
        other = Relay.objects.get_by_name(name)
        return await other.call_me_back(self.ctx.id.name)

    async def call_me_back(self, caller_name):
        caller = Relay.objects.get_by_name(caller_name)
        return await caller.ping()

    async def write_call_fail(self, other_name):
        self.ctx.storage.put("before", 1)
        await Relay.objects.get_by_name(other_name).ping()
        self.ctx.storage.put("after", 1)
        raise RuntimeError("after the call")

    def read(self, key):
        return self.ctx.storage.get(key)


class Ledger(DurableObject):
    """Uses SQL, created in the constructor."""

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec(
            "CREATE TABLE IF NOT EXISTS entries(id INTEGER PRIMARY KEY, amount INTEGER)"
        )

    def add(self, amount):
        return self.ctx.storage.sql.exec(
            "INSERT INTO entries(amount) VALUES (?) RETURNING id, amount", amount
        ).one()

    def total(self):
        return self.ctx.storage.sql.exec(
            "SELECT COALESCE(SUM(amount), 0) AS t FROM entries"
        ).one()["t"]

    def run(self, query, *bindings):
        return self.ctx.storage.sql.exec(query, *bindings).to_array()


class Sleepy(DurableObject):
    """Hibernates quickly."""

    constructions = 0

    class Meta:
        hibernate_after = 0.2

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        type(self).constructions += 1

    def put(self, key, value):
        self.ctx.storage.put(key, value)

    def get(self, key):
        return self.ctx.storage.get(key)


class Gated(DurableObject):
    """Loads state in block_concurrency_while before any event."""

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.loaded = None
        ctx.block_concurrency_while(self._load)

    async def _load(self):
        await asyncio.sleep(0.05)
        self.loaded = self.ctx.storage.get("boot", 0) + 1
        self.ctx.storage.put("boot", self.loaded)

    def loaded_value(self):
        return self.loaded


class LoudMixin:
    """A plain mixin: not a DurableObject."""

    def shout(self, text):
        return text.upper()


class Mixed(LoudMixin, DurableObject):
    pass


class Plain(DurableObject):
    """No storage at all."""

    def add(self, a, b):
        return a + b

    def http(self):
        return HttpResponse("x")


# Registered in every test process, including the cluster tests' runobjects hosts,
# which load no URLconf and no test module.
from tests.support import (  # noqa: E402, F401
    objects_alarms,
    objects_backup,
    objects_cluster,
    objects_schedules,
    objects_sockets,
)
