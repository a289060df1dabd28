"""How an activation reaches its shard: opened (or created) on first use, claimed with a
new fencing epoch, parked in the host's open-shard LRU, and closed to bound open files.

Opening an existing shard (SQLite's open, its schema read, the epoch's claim) blocks for a
millisecond or more, longer on a busy disk. While other objects are at work, an event
whose shard is closed has it opened on a commit thread before its handler runs
(``open_shard_before_event``), so a burst of activations or alarm deliveries does not hold
the event loop, its heartbeats or the other objects; alone, it opens on the loop, where
the trip to a thread would cost more than it saves. A shard that does not exist yet is
created on first write, where the handler uses storage: in a sync handler on a worker
thread (``Meta.run_sync_on_thread``), on that thread, with only the host's bookkeeping
(the open-shard LRU, the catalog) on the loop; in a handler on the loop, on the loop.
"""

import asyncio
import concurrent.futures
import logging
import threading

from durable_objects.conf import get_config
from durable_objects.exceptions import FencedError, ObjectReset
from durable_objects.storage import alarm as alarm_row
from durable_objects.storage.shard import Shard

from .catalog import UNKNOWN

logger = logging.getLogger("durable_objects.runtime")


class ShardMixin:
    """The storage half of ``Activation``."""

    _opening = None  # an asyncio.Lock while a shard is opened off the loop

    def shard_for_event(self, create=True):
        """The open shard, inside the batch transaction and the current event's savepoint.

        With create=False (reads), return None instead of creating a shard that does not
        exist yet, so reading an object that never wrote leaves nothing on disk.
        """
        if self.closed:
            raise ObjectReset("This instance was reset or hibernated; its storage is closed.")
        if self.restored is not None:
            raise self.restored
        if not self.stack:
            raise RuntimeError(
                "Storage was used outside an event. Use storage from handlers, the "
                "constructor or block_concurrency_while()."
            )
        shard = self.shard
        if shard is None or not shard.is_open:
            if not create and shard is None and not self.path.exists():
                return None
            try:
                if self.worker_thread == threading.get_ident():
                    shard = self._open_shard_on_worker()
                else:
                    shard = self._open_shard()
            except FencedError as exc:
                self.abort_cause = ObjectReset(f"{exc} The object was reset.")
                raise
        shard.touch()
        return shard

    @property
    def shard_is_open(self):
        return self.shard is not None and self.shard.is_open

    async def open_shard_before_event(self):
        """Open an existing, closed shard on a commit thread if other objects are at work.

        A failure here is left to the handler's first storage use, which opens the shard
        again on the loop and raises where the object can see it.
        """
        # busy counts the runners at work, this one's too; starting, those about to start.
        others_at_work = self.host.busy + self.host.starting - (self.runner is not None)
        if self.shard_is_open or self.closed or self.restored is not None:
            return
        if others_at_work < 1 or not self.path.exists():
            return
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:  # a re-entrant event may arrive while it opens
            if self.shard_is_open or self.closed:
                return
            shard = self._shard_to_open()
            try:
                if shard.is_open:  # parked: only the claim is left, cheap on the loop
                    opened = self._connect_shard(shard)
                else:
                    # A Shard of its own: the loop never sees one half open.
                    shard = self._new_shard()
                    opened = await self.host.loop.run_in_executor(
                        self.host.commit_executor, self._connect_shard, shard
                    )
            except Exception as exc:
                self.host.open_shards.pop(self.key, None)
                logger.debug("Opening %s off the loop failed: %r", self.path, exc)
                return
            if self.closed:  # reset while it opened
                shard.close(self.host.close_later)
                return
            self._adopt_shard(shard, *opened)

    def _open_shard_on_worker(self):
        """Open (or create) the shard on this worker thread, which the loop does not wait
        for; only the host's bookkeeping hops to the loop, before and after.

        The worker owns the shard while it opens: a new Shard, or the parked one taken out
        of the open-shard LRU, so neither a reset nor the LRU's bound on the loop closes it
        half open. A reset meanwhile closes it once opened and fails the handler.
        """
        shard = self._on_loop(self._take_shard_for_worker)
        opened = self._connect_shard(shard)  # on failure it closes the shard
        adopted = self._on_loop(self._adopt_worker_shard, shard, opened)
        if adopted is None:
            raise ObjectReset("This instance was reset or hibernated; its storage is closed.")
        return adopted

    def _on_loop(self, fn, *args):
        """Run fn(*args) on the host's loop and return its result; from a worker thread."""
        future = concurrent.futures.Future()

        def run():
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        self.host.loop.call_soon_threadsafe(run)
        return future.result()

    def _take_shard_for_worker(self):
        """The parked shard, out of the LRU, or a new Shard: the worker's own. On the loop."""
        if self.closed:  # reset since the handler's storage call: leave the parked shard
            raise ObjectReset("This instance was reset or hibernated; its storage is closed.")
        shard = self.host.take_parked_shard(self.key) if self.shard is None else None
        if shard is None:
            return self._new_shard()
        del self.host.open_shards[self.key]  # shard_opened() counts it again
        return shard

    def _adopt_worker_shard(self, shard, opened):
        """Adopt the shard a worker opened, or close it if a reset came first. On the loop."""
        if self.closed:
            shard.close(self.host.close_later)
            return None
        return self._adopt_shard(shard, *opened)

    def _open_shard(self):
        shard = self._shard_to_open()
        try:
            opened = self._connect_shard(shard)
        except BaseException:
            self.host.open_shards.pop(self.key, None)
            raise
        return self._adopt_shard(shard, *opened)

    def _shard_to_open(self):
        """The shard the previous activation parked, or a new, unopened one. On the loop."""
        shard = self.shard or self.host.take_parked_shard(self.key)
        return shard if shard is not None else self._new_shard()

    def _new_shard(self):
        config = get_config()
        return Shard(
            self.path,
            synchronous=config["SYNCHRONOUS"],
            immediate=self.host.replicator is not None,
            page_size=config["SHARD_PAGE_SIZE"],
        )

    def _connect_shard(self, shard):
        """Open shard if needed and check (or claim) the epoch; blocking, touches only the
        shard. Returns (created, epoch, meta, alarm_due); on failure the shard is closed."""
        created, epoch = False, self.epoch
        names = {"label": self.cls._meta.label, "hex_id": self.hex, "name": self.id.name}
        try:
            if not shard.is_open and epoch is None:
                created, epoch = shard.open_and_claim(**names)
            elif not shard.is_open:  # closed to bound open files: its epoch is checked below
                created = shard.open(**names)
            elif epoch is None:  # parked by the previous activation
                epoch = shard.claim_epoch()
            new = shard.written_meta if created else None  # nothing else in it to read
            meta = new if new is not None else shard.all_meta()
            if meta["epoch"] != epoch:
                raise FencedError("A newer activation of this object holds its shard.")
            if self.id.name is not None and meta["name"] is None:
                shard.set_name(self.id.name)
            alarm_due = self.alarm_due
            if alarm_due is UNKNOWN:
                alarm_due = None if new is not None else alarm_row.due_at(shard)
        except BaseException:
            shard.close()
            raise
        return created, epoch, meta, alarm_due

    def _adopt_shard(self, shard, created, epoch, meta, alarm_due):
        """Make the opened shard this activation's and count it as open. On the loop."""
        self.shard = shard
        self.epoch = epoch
        if self.id.name is None:
            self.id.name = meta["name"]
        self.created_at = meta["created_at"]
        self.alarm_due = alarm_due
        self.host.shard_opened(self, created)
        return shard

    def close_shard(self):
        """Close the idle shard to bound open files; the next storage use reopens it."""
        if self.shard_is_open:
            self.host.release_shard(self.key, self.shard)
