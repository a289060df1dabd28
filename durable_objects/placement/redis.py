"""The cluster placement: leases in Redis, events sent to their holder over the transport.

``route()`` queues an event here when this host holds the object's lease; otherwise it
claims the lease (a host) or finds the holder (or any live host, for a process that
cannot host) and sends the event there over the transport. Events for one object leave
this process in the order ``route()`` was called: each waits until the one before it
has been queued here or handed to the channel layer. That is what keeps a socket's
messages in order when its object lives in another process.
"""

import asyncio
import logging
import os
import random
import time
from collections import OrderedDict

from django.conf import settings
from django.core.checks import Error
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import RedisError

from durable_objects.exceptions import ObjectUnavailable

from .base import BasePlacement
from .leases import Leases, lease_key

logger = logging.getLogger("durable_objects.placement")

# Channel layers that cannot reach another process (E014).
IN_PROCESS_LAYERS = (
    "channels.layers.InMemoryChannelLayer",
    "durable_objects.layers.InProcessChannelLayer",
)

ROUTES_KEPT = 10_000  # objects whose holder this process remembers (for a heartbeat)


def redis_url(config):
    """The placement's Redis URL: the setting, else the REDIS_URL environment variable."""
    return config["REDIS_URL"] or os.environ.get("REDIS_URL")


class RedisPlacement(BasePlacement):
    """Objects spread over the processes of a cluster, one holder per object by lease."""

    distributed = True
    default_alarm_backend = "durable_objects.alarms.rq.RQAlarms"

    def __init__(self, host, config, *, can_host=True):
        from durable_objects.transport import Transport

        url = redis_url(config)
        if not url:
            raise ImproperlyConfigured(
                "DURABLE_OBJECTS['PLACEMENT'] is 'redis' but neither "
                "DURABLE_OBJECTS['REDIS_URL'] nor the REDIS_URL environment variable is set."
            )
        role = config["CLUSTER_ROLE"]
        if role != "auto":
            can_host = role == "host"
        super().__init__(host, config, can_host=can_host)
        self.leases = Leases(url, can_host=can_host, token=host.token)
        self.token = self.leases.token
        self.leases.on_lost = self.lease_lost
        # Redis lost its data (FLUSHALL, a restart): its alarm jobs are gone too.
        self.leases.on_data_lost = lambda: host.alarms.data_lost()
        self.transport = Transport(host, self.leases)
        self.joined = host.loop.create_future()
        self._tails = {}  # hex id -> future: the last routed event of it has left
        self._routes = OrderedDict()  # hex id -> (holder, channel, monotonic expiry)
        self._task = None
        self._releases = set()

    def start(self):
        self._task = self.host.loop.create_task(self._run())

    async def ready(self):
        await asyncio.shield(self.joined)

    async def _run(self):
        await self.transport.start()
        delay = 0.2
        while True:
            try:
                # Every process heartbeats: a host so that calls reach it, any other so
                # that the sockets it holds are not taken for dead.
                await self.leases.register(self.transport.channel)
                break
            except (RedisError, OSError):
                logger.warning("Joining the cluster failed; retrying.", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self.joined.set_result(True)
        await self.leases.run()

    # -- leases --------------------------------------------------------------------------

    def holds(self, hex_id):
        return self.leases.lease_valid(hex_id)

    def holder_alive(self, token):
        live = self.leases.live_tokens
        return live is None or token in live  # not looked yet: keep it

    def hibernated(self, hex_id):
        """Give the lease of a hibernated object back, unless it is live here again first."""
        if self.can_host and not self.host.closed:
            task = self.host.loop.create_task(self._release(hex_id))
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)

    async def _release(self, hex_id):
        if hex_id in self._tails or self.host.find_activation(hex_id) is not None:
            return
        await self.leases.release(hex_id)

    async def lineage(self, hex_id):
        return await self.leases.lineage(hex_id)

    async def confirm(self, hex_id, field=None, value=None, machine=None):
        return await self.leases.confirm(hex_id, field, value, machine)

    async def retire(self, hex_id, label, generations, floor):
        await self.leases.retire(hex_id, label, generations, floor)

    async def retired(self, before, limit):
        return await self.leases.retired(before, limit)

    async def collected(self, generations):
        await self.leases.collected(generations)

    async def holders(self, hex_ids):
        values = await self.leases.redis.mget([lease_key(hex_id) for hex_id in hex_ids])
        return {
            hex_id: None if value is None else value.decode()
            for hex_id, value in zip(hex_ids, values, strict=True)
        }

    async def held_ids(self, limit):
        prefix = lease_key("")
        found = set()
        async for key in self.leases.redis.scan_iter(match=prefix + "*", count=1000):
            found.add(key.decode()[len(prefix) :])
            if len(found) >= limit:
                break
        return found

    # -- routing -------------------------------------------------------------------------

    def route(self, cls, object_id, event, hops=0):
        """Queue event here or send it on, after the events routed before it; a future."""
        hex_id = str(object_id)
        before = self._tails.get(hex_id)
        if before is None and self.leases.lease_valid(hex_id):
            return self.host.dispatch(cls, object_id, event)
        gone = self.host.loop.create_future()
        self._tails[hex_id] = gone
        return asyncio.ensure_future(self._route(cls, object_id, event, hops, before, gone))

    async def _route(self, cls, object_id, event, hops, before, gone):
        hex_id = str(object_id)
        try:
            if before is not None:
                await asyncio.wait([before])
            if not self.joined.done():
                try:
                    await asyncio.wait_for(asyncio.shield(self.joined), 3 * self.leases.heartbeat)
                except TimeoutError:
                    raise ObjectUnavailable(
                        "This process has not reached the cluster's Redis yet. Retry."
                    ) from None
            try:
                outcome = await self._place(cls, object_id, event, hops)
            except (RedisError, OSError) as exc:
                raise ObjectUnavailable(
                    f"The cluster's Redis cannot be reached ({exc}); the call was not sent. Retry."
                ) from exc
        finally:
            if not gone.done():
                gone.set_result(None)
            if self._tails.get(hex_id) is gone:
                del self._tails[hex_id]
        try:
            return await outcome
        except ObjectUnavailable:
            self.forget_route(hex_id)
            raise
        except (RedisError, OSError) as exc:
            self.forget_route(hex_id)
            raise ObjectUnavailable(
                f"The cluster's Redis went away while the call waited ({exc}); the call may "
                "have run. Retry if the method is idempotent."
            ) from exc

    async def _place(self, cls, object_id, event, hops):
        """Queue event here or hand it to the channel layer; return its outcome's awaitable."""
        placement, hex_id = self.leases, str(object_id)
        known = self._routes.get(hex_id)
        if known is not None and known[2] > time.monotonic():
            # Where the object was a heartbeat ago. If it has moved since, its old holder
            # passes the call on (one more hop); if that holder died, the wait says so.
            holder, channel, _ = known
            reply = await self.transport.send(channel, cls, object_id, event, hops)
            return self.transport.wait(reply, holder, object_id, timed=event.timed)
        if placement.can_host:
            holder = await placement.claim(hex_id)
            if holder == placement.token:
                return self.host.dispatch(cls, object_id, event)
        else:
            holder = await placement.owner(hex_id)
        if holder is None:
            hosts = await placement.live_hosts()
            if not hosts:
                raise ObjectUnavailable("No live host in the cluster; start one and retry.")
            holder = random.choice(list(hosts))
            channel = hosts[holder]
        else:
            channel = await placement.channel_of(holder)
            if channel is None:
                raise ObjectUnavailable(
                    f"The host holding {object_id!r} is not answering; the object moves when "
                    f"its lease ends (within LEASE_TTL, {placement.ttl} s). Retry."
                )
        self._routes[hex_id] = (holder, channel, time.monotonic() + placement.heartbeat)
        self._routes.move_to_end(hex_id)
        while len(self._routes) > ROUTES_KEPT:
            self._routes.popitem(last=False)
        reply = await self.transport.send(channel, cls, object_id, event, hops)
        return self.transport.wait(reply, holder, object_id, timed=event.timed)

    def forget_route(self, hex_id):
        self._routes.pop(hex_id, None)

    async def leave(self):
        """Release the leases, stop heartbeats and the transport (clean shutdown)."""
        self.leases.stopped = True
        if self._task is not None:
            self._task.cancel()
        await self.transport.close()
        await self.leases.close()

    def close(self):
        self.leases.leave_sync()  # daphne exits without awaiting anything
        task, loop = self._task, self.host.loop
        if task is not None and not task.done() and not loop.is_closed():
            # From any thread: the heartbeat must not outlive the host.
            loop.call_soon_threadsafe(task.cancel)

    @classmethod
    def check(cls, config):
        errors = []
        if not redis_url(config):
            errors.append(
                Error(
                    "PLACEMENT is 'redis' but no Redis URL is set.",
                    hint="Set DURABLE_OBJECTS['REDIS_URL'] or the REDIS_URL environment variable.",
                    id="durable_objects.E009",
                )
            )
        layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
        backend = layers.get("default", {}).get("BACKEND")
        if backend in IN_PROCESS_LAYERS:
            errors.append(
                Error(
                    f"PLACEMENT is 'redis' but the default channel layer is {backend}, which "
                    "cannot reach other processes.",
                    hint="Use channels_redis.core.RedisChannelLayer as the default channel "
                    "layer, its hosts given as {'address': url, 'socket_timeout': None} "
                    "(durable_objects.conf.cluster_channel_layers() writes CHANNEL_LAYERS).",
                    id="durable_objects.E014",
                )
            )
        alias = config["TRANSPORT_LAYER"]
        # A missing default layer is E004 already.
        if alias != "default" and alias not in layers:
            errors.append(
                Error(
                    f"DURABLE_OBJECTS['TRANSPORT_LAYER'] is {alias!r}, which is not a key of "
                    "CHANNEL_LAYERS.",
                    hint="Add that layer to CHANNEL_LAYERS (channels_redis.pubsub."
                    "RedisPubSubChannelLayer is the fastest), or remove TRANSPORT_LAYER to "
                    "use the default layer.",
                    id="durable_objects.E015",
                )
            )
        return errors
