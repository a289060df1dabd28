"""Replication in the runtime: the output gate that waits for the replica, restore on a move.

With ``REPLICATION`` set, the host has one ``Replicator``. For each activation it

1. **prepares** the local copy before the constructor runs (``prepare``): the copy is
   current if the object's lineage (kept by the placement, in Redis for a cluster) names
   this machine and the copy's generation; otherwise the host starts a new generation
   and restores the newest synced one from the replica (``litestream restore``);
2. **gates** each batch's replies (``replicate``, after the local commit): with
   ``DURABILITY = "replicated"`` they leave only once the replica holds the batch's
   transaction and the placement confirms the claim is still the newest (fencing
   across machines). One sync and one confirmation serve the whole batch.

Blocking work (the control socket, restores) runs on threads of the replicator's own,
never on the event loop. docs/topics/replication.md.
"""

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured

from durable_objects.exceptions import FencedError, ObjectReset, ObjectUnavailable
from durable_objects.storage import replication

logger = logging.getLogger("durable_objects.replication")

THREADS = 32  # syncs wait on the network: many may be in flight at once


class Replicator:
    """This host's side of Litestream replication (one per host)."""

    def __init__(self, host, settings):
        self.host = host
        self.settings = settings
        self.replicated = settings.replicated
        self.client = replication.LitestreamClient(settings.socket, timeout=settings.sync_timeout)
        self.machine = replication.machine_id(host.root)
        self.executor = ThreadPoolExecutor(THREADS, thread_name_prefix="durable-objects-replica")
        self.registered = {}  # shard path -> the generation the daemon replicates it to
        self._locks = {}  # shard path -> lock: register, unregister and restore in turn
        self._background = set()
        self._collector = None
        self._behind = set()  # shard paths whose first sync runs in the background now
        self.syncs = 0  # syncs with wait asked of the daemon (one per gated batch)

    @classmethod
    def for_host(cls, host, config):
        """The host's replicator, or None when replication is off.

        With DURABILITY "replicated", ImproperlyConfigured if the daemon cannot be
        reached: a host refuses to start rather than fail every write. With "local" it
        starts with a warning, and shards replicate once the daemon answers.
        """
        settings = replication.replication_settings(config)
        if settings is None:
            return None
        replicator = cls(host, settings)
        try:
            replicator.client.info()
        except replication.ReplicationError as error:
            if not settings.replicated:  # writes need only the local disk: go on, warn
                logger.warning(
                    "This machine's Litestream daemon does not answer (%s); shards are "
                    "not replicated until it does. Start it with `manage.py litestream`.",
                    error,
                )
                return replicator
            replicator.close()
            raise ImproperlyConfigured(
                f"Replication is on (DURABILITY {settings.durability!r}) but this machine's "
                f"Litestream daemon does not answer: {error} Start it with "
                "`manage.py litestream` (docs/ref/commands.md#litestream)."
            ) from None
        return replicator

    def close(self):
        if self._collector is not None:
            self._collector.cancel()
        self.executor.shutdown(wait=False)
        self.client.close()

    def replica_url(self, activation, generation):
        return self.settings.shard_replica_url(
            activation.cls._meta.label, activation.hex, generation
        )

    async def _run(self, function, *args):
        return await self.host.loop.run_in_executor(self.executor, function, *args)

    def _lock(self, path):
        return self._locks.setdefault(str(path), threading.Lock())

    # -- before the constructor ----------------------------------------------------------

    async def prepare(self, activation):
        """Make the activation's local copy the newest one; set its replica generation.

        ObjectUnavailable if the newest copy cannot be had (its only copy was on a
        machine that is gone, the replica is unreachable or holds another object).
        """
        placement = self.host.placement
        path = activation.path
        lineage = await placement.lineage(activation.hex)
        local = replication.local_generation(path) if path.exists() else None
        if not placement.distributed:
            # One machine: its disk holds the newest copy.
            activation.replica_gen = local or 1
            if path.exists() and local is None:
                await self._run(replication.set_local_generation, path, 1)
            return
        if not lineage:  # new, or Redis lost it: the store says what anyone synced
            lineage = await self._lineage_from_replica(activation, local)
        if (
            lineage.get("machine") == self.machine
            and local is not None
            and str(local) == lineage.get("gen")
        ):
            activation.replica_gen = local  # this machine wrote the newest generation
            return
        generation = max(int(lineage.get("gen", 0)), local or 0) + 1
        if not await placement.confirm(activation.hex, "gen", generation, self.machine):
            raise FencedError("A newer activation of this object claimed it meanwhile.")
        self.host.close_parked_shard(activation.key)
        synced = lineage.get("synced")
        await self._run(self._take_over, activation, lineage, synced, generation)
        activation.replica_gen = generation
        # Once the new generation holds a whole copy, the ones before it are retired.
        activation.retiring = range(int(lineage.get("floor", 1)), generation)
        if synced is not None:  # the new generation's path gets a whole copy at once
            await self.replicate(activation, first=True)

    async def _lineage_from_replica(self, activation, local):
        """A lineage for an object Redis has none of: {} (keep the local copy, if any)
        unless the store holds a generation newer than the local copy's.

        Redis loses lineages with its data (FLUSHALL, a restart without persistence);
        without this, a machine with a stale copy would serve it. A new object costs one
        listing of the store. ObjectUnavailable if the store cannot be listed and writes
        wait for it ("replicated"); with "local" the local copy is kept, with a warning.
        """
        url = self.object_replica_url(activation)
        try:
            generations = await self._run(replication.replica_generations, url)
        except replication.ReplicationError as error:
            if self.replicated:
                raise ObjectUnavailable(
                    f"{activation.cls._meta.label} {activation.hex} has no lineage in Redis "
                    f"and its replica cannot be listed ({error}); retry once the store "
                    "answers."
                ) from None
            logger.warning(
                "%s %s has no lineage and its replica cannot be listed (%s); its local "
                "copy is kept.",
                activation.cls._meta.label,
                activation.hex,
                error,
            )
            return {}
        newest = max(generations, default=None)
        if newest is None or (local is not None and local >= newest):
            return {}  # nothing synced, or this machine wrote the newest
        logger.warning(
            "%s %s has no lineage in Redis (it lost its data?); the store's newest "
            "generation is %s, the local copy's %s: restoring from the store.",
            activation.cls._meta.label,
            activation.hex,
            newest,
            local,
        )
        return {"gen": str(newest), "synced": str(newest)}

    def object_replica_url(self, activation):
        """The parent of the object's generations, ``<prefix>/<label>/<id[:2]>/<id>``."""
        parts = urlsplit(self.replica_url(activation, 0))
        return urlunsplit(parts._replace(path=parts.path.rsplit("/", 1)[0]))

    def _take_over(self, activation, lineage, synced, generation):
        """On a thread: replace the local copy with the newest synced generation."""
        path = activation.path
        with self._lock(path):
            self._unregister(path)
            if not lineage:
                # No machine has replicated it: a shard from before replication, or a
                # Redis that lost its data. A local copy is all there is: keep it.
                replication.set_local_generation(path, generation)
                return
            replication.remove_local_copy(path)
            if synced is None:
                if "gen" in lineage and not self.replicated:
                    raise ObjectUnavailable(
                        f"{activation.cls._meta.label} {activation.hex} was never replicated "
                        f"and the machine that held it ({lineage.get('machine')}) no longer "
                        "does: its data is only on that machine's disk. Bring that machine "
                        "back, or reset the object's lineage to start it empty."
                    )
                if "gen" in lineage:  # "replicated": nothing of it was ever acknowledged
                    logger.warning(
                        "%s %s was never replicated; it starts empty on this machine.",
                        activation.cls._meta.label,
                        activation.hex,
                    )
                replication.set_local_generation(path, generation)
                return
            url = self.replica_url(activation, int(synced))
            try:
                replication.restore(
                    path,
                    url,
                    overwrite=True,
                    shard=(activation.cls._meta.label, activation.hex),
                    timeout=max(600.0, self.settings.sync_timeout),
                )
            except replication.NoReplica as error:
                raise ObjectUnavailable(
                    f"The replica of {activation.cls._meta.label} {activation.hex} "
                    f"(generation {synced}) holds nothing, though it was synced: {error} "
                    "The object stays unavailable rather than start empty."
                ) from None
            except replication.ReplicationError as error:
                raise ObjectUnavailable(
                    f"Restoring {activation.cls._meta.label} {activation.hex} from its "
                    f"replica failed: {error}"
                ) from None
            replication.set_local_generation(path, generation)
            logger.info(
                "%s %s restored from generation %s; now generation %s on machine %s.",
                activation.cls._meta.label,
                activation.hex,
                synced,
                generation,
                self.machine,
            )

    # -- after each commit ---------------------------------------------------------------

    async def after_commit(self, activation):
        """Run after a batch's local commit that wrote: wait for the replica or start it."""
        if self.replicated:
            await self.replicate(activation)
        else:
            self.replicate_behind(activation)

    def replicate_behind(self, activation):
        """With "local" durability: have the daemon replicate the shard, without waiting.

        Only the first commit of a generation needs anything (registering the shard and
        its first sync); after it the daemon replicates on its own.
        """
        path = str(activation.path)
        if self.registered.get(path) != activation.replica_gen and path not in self._behind:
            self._behind.add(path)
            task = self._spawn(self._replicate_later(activation))
            task.add_done_callback(lambda _: self._behind.discard(path))

    async def _replicate_later(self, activation):
        try:
            await self.replicate(activation, first=True)
        except Exception:
            logger.warning(
                "%s %s: the first sync to the replica failed; Litestream retries it.",
                activation.cls._meta.label,
                activation.hex,
                exc_info=True,
            )

    async def replicate(self, activation, first=False):
        """Return once the replica holds every local commit and the claim is confirmed.

        ObjectReset (retryable) if the replica does not take the write within
        SYNC_TIMEOUT; FencedError if a newer activation claimed the object meanwhile.
        Either way nothing of the batch may be acknowledged.
        """
        generation = activation.replica_gen
        path = activation.path
        first = first or self.registered.get(str(path)) != generation
        try:
            result = await self._run(self._sync, activation, generation)
        except replication.ReplicationError as error:
            raise ObjectReset(
                f"The replica did not take the write within SYNC_TIMEOUT "
                f"({self.settings.sync_timeout:g} s): {error} Nothing was acknowledged; "
                "retry if the call is idempotent."
            ) from error
        if not result.replicated:
            raise ObjectReset(
                f"The replica holds transaction {result.replica_txid}, not {result.txid}; "
                "nothing was acknowledged."
            )
        field = "synced" if first else None
        placement = self.host.placement
        if not await placement.confirm(activation.hex, field, generation, self.machine):
            raise FencedError(
                "This host's claim on the object is no longer the newest (another machine "
                "holds it now); its last writes are not acknowledged."
            )
        retiring, activation.retiring = activation.retiring, None
        if first and retiring is not None:
            label = activation.cls._meta.label
            await placement.retire(activation.hex, label, list(retiring), generation)
            if self.settings.retention == 0:
                self._spawn(self.collect())

    def _sync(self, activation, generation):
        path = activation.path
        with self._lock(path):
            if self.registered.get(str(path)) != generation:
                self._unregister(path)
                self.client.register(path, self.replica_url(activation, generation))
                self.registered[str(path)] = generation
            self.syncs += 1
            return self.client.sync(path, wait=True, timeout=self.settings.sync_timeout)

    # -- old generations -----------------------------------------------------------------

    def start(self):
        """Begin collecting retired generations (on the host's loop, a server process)."""
        self._collector = self._spawn(self._collect_forever())

    def _spawn(self, coroutine):
        task = self.host.loop.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _collect_forever(self):
        interval = max(1.0, min(60.0, self.settings.retention))
        while not self.host.closed:
            await asyncio.sleep(interval)
            try:
                await self.collect()
            except Exception:
                logger.warning("Collecting old replica generations failed.", exc_info=True)

    async def collect(self, limit=100):
        """Delete the replica paths of generations retired longer than RETENTION ago;
        return how many generations were deleted."""
        placement = self.host.placement
        due = await placement.retired(time.time() - self.settings.retention, limit)
        done = []
        for label, hex_id, generation in due:
            url = self.settings.shard_replica_url(label, hex_id, generation)
            try:
                await self._run(replication.delete_replica, url)
            except replication.ReplicationError:
                logger.warning("Deleting the old replica %s failed.", url, exc_info=True)
                continue
            done.append((label, hex_id, generation))
        await placement.collected(done)
        return len(done)

    # -- when a shard closes -------------------------------------------------------------

    def closing(self, path, close):
        """A closer for the shard at path: stop its replication (a last sync), then close."""

        def unregister_then_close():
            try:
                with self._lock(path):
                    self._unregister(path)
            finally:
                close()

        return unregister_then_close

    def _unregister(self, path):
        # Asked even when this process did not register it: an earlier process on this
        # machine (same daemon) may have.
        self.registered.pop(str(path), None)
        try:
            self.client.unregister(path, timeout=self.settings.sync_timeout)
        except replication.DaemonError:
            pass  # not registered
        except replication.ReplicationError:
            logger.warning("Unregistering %s from Litestream failed.", path, exc_info=True)


def wait_background(replicator):
    """An awaitable for the background first syncs in flight (tests)."""
    return asyncio.gather(*replicator._background, return_exceptions=True)
