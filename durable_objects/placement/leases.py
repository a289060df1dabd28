"""The cluster's leases and host heartbeats in Redis, for ``RedisPlacement``.

A lease is ``do:lease:<hex id>`` = this host's token, set with ``NX`` and a TTL
(``LEASE_TTL``). The holder renews its leases every third of the TTL; a lease it fails
to renew in time is lost, and the activation is dropped at once. The lease says who
*should* host an object; the fencing epoch in the shard (bumped by every activation,
checked at every commit) makes sure a host that lost its lease (paused, partitioned,
slow) can never write again. A host also refuses to hand out a reply once its lease may
have expired (``lease_valid``), so a stale instance cannot answer even a read.

Hosts register in the sorted set ``do:hosts`` (score: last heartbeat, UNIX seconds) with
their transport channel in ``do:host:<token>``; a host silent for three heartbeats is
dead. Processes that cannot host (commands, RQ jobs, WSGI) send their calls to a live
host.
"""

import asyncio
import json
import logging
import os
import secrets
import time

from durable_objects.conf import get_config
from durable_objects.exceptions import ObjectUnavailable

logger = logging.getLogger("durable_objects.placement")

HOSTS = "do:hosts"
# When this Redis's lease data began, UNIX seconds. Missing after a restart without
# persistence or a FLUSHALL: the first process to notice writes it, and no lease is
# claimed for LEASE_TTL after it, so that every lease taken before has run out in the
# memory of its holder too (a holder trusts its lease until renewal + 0.9 TTL).
BOOT = "do:boot"

_RENEW = """
local renewed = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    renewed[#renewed + 1] = key
  end
end
return renewed
"""

# Take a free lease and bump the object's fencing epoch in one step; return the epoch,
# or 0 if another process holds the lease.
_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""

# 1 if ARGV[1] holds the lease in KEYS[1] and ARGV[2] is still the epoch in KEYS[2];
# then, with ARGV[3] (a field) and ARGV[4] (its value), also set that field of the
# lineage hash KEYS[3]. 0 otherwise (a newer activation holds the object).
_CONFIRM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[3], ARGV[3], ARGV[4], 'machine', ARGV[5]) end
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lease_key(hex_id):
    return f"do:lease:{hex_id}"


def epoch_key(hex_id):
    return f"do:epoch:{hex_id}"


def lineage_key(hex_id):
    """The object's replica lineage: which machine holds its newest copy, which generation."""
    return f"do:lineage:{hex_id}"


# Replica generations no longer restored from, scored by when they were retired:
# members "<label>|<hex id>|<generation>" (runtime.replica deletes them after RETENTION).
RETIRED = "do:retired"


def host_key(token):
    return f"do:host:{token}"


POOL_SIZE = 64  # connections to Redis per process for placement commands


class Leases:
    """This process's view of the cluster: its token, its leases, the live hosts."""

    def __init__(self, url, *, can_host, token=None):
        import redis.asyncio

        config = get_config()
        self.url = url
        # Blocking: more concurrent commands than connections wait for one (redis-py's
        # default pool raises "Too many connections" past 100, failing a burst of calls).
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=POOL_SIZE, timeout=10
        )
        self.redis = redis.asyncio.Redis(connection_pool=pool)
        # The heartbeat and the renewals have a connection of their own: they must not
        # wait behind a burst of other commands (a thousand leases given back at once).
        self.beat_redis = redis.asyncio.Redis.from_url(url)
        self.can_host = can_host
        self.token = token or f"{os.getpid()}-{secrets.token_hex(4)}"
        self.ttl = float(config["LEASE_TTL"])
        self.heartbeat = float(config["HOST_HEARTBEAT"])
        self.leases = {}  # hex id -> monotonic deadline until which the lease is surely ours
        self.epochs = {}  # hex id -> the fencing epoch of our lease (do:epoch at the claim)
        self._claim = self.redis.register_script(_CLAIM)
        self._confirm = self.redis.register_script(_CONFIRM)
        self._renew = self.redis.register_script(_RENEW)
        self._release = self.redis.register_script(_RELEASE)
        self.channel = None
        self.on_lost = None  # callback(hex id) when a lease could not be renewed
        self.on_data_lost = None  # callback() when Redis is found to have lost its data
        self.last_beat = time.time()  # when the heartbeat last reached Redis
        self.boot = None  # the BOOT marker this process has seen
        self.live_tokens = None  # the processes heard from at the last heartbeat
        self.stopped = False  # set when the host shuts down: run() ends

    # -- hosts ---------------------------------------------------------------------------

    async def register(self, channel):
        self.channel = channel
        await self._beat()

    async def _beat(self, client=None):
        info = json.dumps(
            {
                "channel": self.channel,
                "pid": os.getpid(),
                "hosts": self.can_host,
                "leases": len(self.leases),
            }
        )
        async with (client or self.redis).pipeline(transaction=False) as pipe:
            pipe.set(host_key(self.token), info, px=int(self.heartbeat * 3000))
            pipe.zadd(HOSTS, {self.token: time.time()})
            pipe.zremrangebyscore(HOSTS, 0, time.time() - 3600)  # long gone processes
            await pipe.execute()
        self.last_beat = time.time()

    def presumed_dead(self):
        """True if callers may have given this host up (its heartbeat key has expired).

        A caller that sees the key gone reports ObjectUnavailable and may retry elsewhere;
        so a host that was paused that long refuses the calls it finds waiting, rather
        than run them late, after their retries. The margin (half a heartbeat) covers the
        time between this clock and Redis's.
        """
        return time.time() - self.last_beat > 2.5 * self.heartbeat

    async def live_processes(self, client=None):
        """{token: info} of the cluster's processes heard from within three heartbeats."""
        client = client or self.redis
        since = time.time() - 3 * self.heartbeat
        tokens = [t.decode() for t in await client.zrangebyscore(HOSTS, since, "+inf")]
        if not tokens:
            return {}
        infos = await client.mget([host_key(t) for t in tokens])
        return {
            token: json.loads(info)
            for token, info in zip(tokens, infos, strict=True)
            if info is not None
        }

    async def live_hosts(self):
        """{token: channel} of the live processes that host objects."""
        processes = await self.live_processes()
        return {token: info["channel"] for token, info in processes.items() if info["hosts"]}

    async def channel_of(self, token):
        info = await self.redis.get(host_key(token))
        return None if info is None else json.loads(info)["channel"]

    # -- leases --------------------------------------------------------------------------

    def lease_valid(self, hex_id):
        deadline = self.leases.get(hex_id)
        return deadline is not None and time.monotonic() < deadline

    async def owner(self, hex_id):
        value = await self.redis.get(lease_key(hex_id))
        return None if value is None else value.decode()

    async def _check_boot(self, client=None):
        """Notice a Redis that lost its data: drop every lease; return the marker."""
        client = client or self.redis
        marker = await client.get(BOOT)
        if marker is None:
            await client.set(BOOT, repr(time.time()), nx=True)
            marker = await client.get(BOOT)
        marker = float(marker)
        if self.boot is not None and marker != self.boot:
            logger.warning("Redis lost its data (restart or FLUSHALL): leases are dropped.")
            if self.on_data_lost is not None:
                self.on_data_lost()
            for hex_id in list(self.leases):
                del self.leases[hex_id]
                self.epochs.pop(hex_id, None)
                if self.on_lost is not None:
                    self.on_lost(hex_id)
        self.boot = marker
        return marker

    async def claim(self, hex_id):
        """Take the lease if nobody holds it; return the holder's token (ours if taken)."""
        boot = await self._check_boot()
        if time.time() < boot + self.ttl:
            raise ObjectUnavailable(
                "The cluster's Redis lost its data moments ago; no object is placed until "
                f"every old lease has run out (LEASE_TTL, {self.ttl} s). Retry."
            )
        started = time.monotonic()
        epoch = await self._claim(
            keys=[lease_key(hex_id), epoch_key(hex_id)], args=[self.token, int(self.ttl * 1000)]
        )
        if epoch:
            self.leases[hex_id] = started + self.ttl * 0.9
            self.epochs[hex_id] = int(epoch)
            return self.token
        holder = await self.owner(hex_id)
        if holder == self.token:  # ours already (an activation that hibernated)
            self.leases[hex_id] = max(self.leases.get(hex_id, 0), started)
            if hex_id not in self.epochs:
                self.epochs[hex_id] = int(await self.redis.get(epoch_key(hex_id)) or 0)
            await self._renew_keys([hex_id])
        return holder

    async def confirm(self, hex_id, field=None, value=None, machine=None):
        """True if our lease on hex_id is still the current one (lease and epoch in Redis).

        With field, also set that field of the object's lineage (and its machine) in the
        same step, only if the lease is current: a late holder cannot rewrite it.
        """
        epoch = self.epochs.get(hex_id)
        if epoch is None:
            return False
        done = await self._confirm(
            keys=[lease_key(hex_id), epoch_key(hex_id), lineage_key(hex_id)],
            args=[
                self.token,
                str(epoch),
                field or "",
                "" if value is None else str(value),
                machine or "",
            ],
        )
        if not done:  # fenced: forget the claim, the next event claims afresh
            self.leases.pop(hex_id, None)
            self.epochs.pop(hex_id, None)
        return bool(done)

    async def retire(self, hex_id, label, generations, floor):
        """Queue generations of hex_id for deletion; the lineage's floor moves to floor."""
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            if generations:
                pipe.zadd(RETIRED, {f"{label}|{hex_id}|{g}": now for g in generations})
            pipe.hset(lineage_key(hex_id), "floor", floor)
            await pipe.execute()

    async def retired(self, before, limit):
        members = await self.redis.zrangebyscore(RETIRED, "-inf", before, start=0, num=limit)
        found = []
        for member in members:
            label, hex_id, generation = member.decode().split("|")
            found.append((label, hex_id, int(generation)))
        return found

    async def collected(self, generations):
        if generations:
            await self.redis.zrem(RETIRED, *("|".join(map(str, item)) for item in generations))

    async def lineage(self, hex_id):
        """The object's lineage hash as a dict of str (empty if it has none)."""
        values = await self.redis.hgetall(lineage_key(hex_id))
        return {key.decode(): value.decode() for key, value in values.items()}

    async def release(self, hex_id):
        self.leases.pop(hex_id, None)
        self.epochs.pop(hex_id, None)
        try:
            await self._release(keys=[lease_key(hex_id)], args=[self.token])
        except Exception:  # the lease expires by itself
            logger.warning("Releasing the lease of %s failed.", hex_id, exc_info=True)

    async def _renew_keys(self, hex_ids, client=None):
        started = time.monotonic()
        keys = [lease_key(h) for h in hex_ids]
        renewed = await self._renew(
            keys=keys, args=[self.token, int(self.ttl * 1000)], client=client
        )
        renewed = {key.decode() if isinstance(key, bytes) else key for key in renewed}
        for hex_id in hex_ids:
            if lease_key(hex_id) in renewed:
                if hex_id in self.leases:
                    self.leases[hex_id] = started + self.ttl * 0.9
            elif self.leases.pop(hex_id, None) is not None and self.on_lost is not None:
                self.epochs.pop(hex_id, None)
                self.on_lost(hex_id)

    async def run(self):
        """Heartbeat and renew the leases until cancelled or stopped."""
        interval = min(self.heartbeat, self.ttl / 3)
        task = asyncio.current_task()
        while not self.stopped:
            # Python 3.11's asyncio.wait_for (inside redis-py's connect) can swallow a
            # cancellation: stop on the task's pending cancel too, or the loop beats on
            # forever and the process never exits.
            if task.cancelling():
                raise asyncio.CancelledError
            try:
                beat = self.beat_redis
                await self._check_boot(beat)
                await self._beat(beat)
                self.live_tokens = frozenset(await self.live_processes(beat))
                if self.leases:
                    await self._renew_keys(list(self.leases), beat)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis is away: the leases run out by their deadlines, and the instances
                # stop answering (lease_valid) until Redis is back and they are reclaimed.
                logger.warning("Heartbeat or lease renewal failed.", exc_info=True)
                now = time.monotonic()
                for hex_id, deadline in list(self.leases.items()):
                    if now >= deadline:
                        del self.leases[hex_id]
                        self.epochs.pop(hex_id, None)
                        if self.on_lost is not None:
                            self.on_lost(hex_id)
            await asyncio.sleep(interval)

    def leave_sync(self):
        """Give the leases back and stop counting as alive, without the event loop.

        For a process that is exiting (daphne's shutdown runs no coroutine of ours);
        if Redis cannot be reached, the leases run out by themselves.
        """
        import redis

        self.stopped = True
        leases, self.leases = list(self.leases), {}
        try:
            client = redis.Redis.from_url(self.url, socket_timeout=1)
            release = client.register_script(_RELEASE)
            for hex_id in leases:
                release(keys=[lease_key(hex_id)], args=[self.token])
            client.zrem(HOSTS, self.token)
            client.delete(host_key(self.token))
            client.close()
        except redis.RedisError:
            logger.warning("The leases could not be given back; they run out.", exc_info=True)

    async def close(self):
        for hex_id in list(self.leases):
            await self.release(hex_id)
        try:
            await self.redis.zrem(HOSTS, self.token)
            await self.redis.delete(host_key(self.token))
        finally:
            await self.redis.aclose()
            await self.beat_redis.aclose()
