"""Point-in-time recovery of one object, run inside its live instance (issue 15, part 2).

With ``REPLICATION`` on, the replica holds each shard's history; a bookmark
(``storage.replication.bookmarks``) names a point of it. Restoring to a bookmark:

1. ``litestream restore -txid`` (or ``-timestamp``) of the bookmark's generation into
   a file in the host's spool, checked as an import is (``storage.backup``): a bad
   bookmark, a state the replica no longer keeps, a replica that holds another object
   are refused here, with the object's database untouched;
2. the object's open sockets are closed with ``CLOSE_RESTORED`` and its writes so far
   commit (an event is atomic up to here);
3. a **new generation** starts (the restored state diverges from the history after the
   bookmark, which must not be overwritten): the shard is unregistered from the daemon,
   the file is swapped in (one transaction, ``backup.swap_in``), the new generation is
   recorded (the lineage in a cluster, the local sidecar always) and synced whole;
4. the restored alarm is armed again, and the instance resets after the event: the
   next event constructs it on the restored database.

docs/topics/backups.md#point-in-time-recovery.
"""

import functools
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from durable_objects.conf import get_config
from durable_objects.exceptions import FencedError, ObjectReset
from durable_objects.sockets.protocol import CLOSE_RESTORED, REASON_RESTORED
from durable_objects.storage import backup, replication
from durable_objects.storage.replication import bookmarks
from durable_objects.storage.replication.bookmarks import Bookmark, InvalidBookmark
from durable_objects.storage.replication.local import litestream_dir

SPOOL = ".backups"  # the spool export and import use (backups/events.py)


@dataclass(frozen=True)
class RestorePlan:
    """What a restore to a bookmark brings back (a dry run stops here)."""

    bookmark: str
    generation: int  # the generation restored from
    txid: int  # Litestream's transaction the restored state ends with
    entries: int
    tables: tuple
    alarm: dict | None
    size: int
    wake: float | None = None  # the earliest of the alarm, a schedule, the queue's head

    def as_dict(self):
        return {
            "bookmark": self.bookmark,
            "generation": self.generation,
            "txid": self.txid,
            "entries": self.entries,
            "tables": list(self.tables),
            "alarm": self.alarm,
            "size": self.size,
        }


def replicator_of(activation):
    """The host's replicator; InvalidBookmark when replication is off."""
    replicator = activation.host.replicator
    if replicator is None:
        raise InvalidBookmark(
            "Restoring to a bookmark needs point-in-time recovery, which comes with "
            "replication: set DURABLE_OBJECTS['REPLICATION'] "
            "(a file:// replica on another disk will do for one machine). "
            "docs/topics/backups.md#point-in-time-recovery"
        )
    return replicator


def _label(activation):
    return activation.cls._meta.label


async def _on_thread(replicator, fn, *args, **kwargs):
    return await replicator._run(functools.partial(fn, *args, **kwargs))


# -- bookmarks --------------------------------------------------------------------------


def _outside_atomic(activation, what):
    shard = activation.shard
    if shard is not None and shard.is_open and shard.atomic_depth:
        raise RuntimeError(
            f"{what} is not allowed inside storage.atomic() or transaction_sync(): it "
            "commits the writes made before it."
        )


async def current_bookmark(activation, event):
    """A bookmark of the object's state now: its writes so far commit and reach the replica."""
    replicator = replicator_of(activation)
    _outside_atomic(activation, "get_current_bookmark()")
    activation.shard_for_event()  # an object without storage gets its (empty) shard
    await activation.before_outgoing_call(event)
    await replicator.replicate(activation)  # registered, synced, claim confirmed
    txid = await _on_thread(replicator, replicator.client.txid, activation.path)
    mark = Bookmark(activation.replica_gen, txid, time.time())
    return mark.text(_label(activation), activation.hex)


def bookmark_for_time(activation, when):
    """A bookmark of the last state the replica held before when (datetime or UNIX s)."""
    replicator = replicator_of(activation)
    seconds = bookmarks.unix_seconds(when)
    bookmarks.check_moment(seconds, replicator.settings.retention)
    generation = activation.replica_gen or 1
    return Bookmark(generation, None, seconds).text(_label(activation), activation.hex)


def parse(activation, text):
    """The Bookmark text names for this object, or InvalidBookmark."""
    replicator = replicator_of(activation)
    return bookmarks.parse(
        text,
        label=_label(activation),
        hex_id=activation.hex,
        retention=replicator.settings.retention,
    )


# -- restoring into a file --------------------------------------------------------------


def spool_file(activation):
    folder = Path(activation.host.root) / SPOOL
    folder.mkdir(exist_ok=True)
    return folder / f"{activation.hex}-{secrets.token_hex(16)}.sqlite3"


def remove_file(path):
    for suffix in ("", "-wal", "-shm", "-journal", "-txid"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def restore_to_file(activation, text, target):
    """Rebuild the state text names into the file target; a RestorePlan.

    InvalidBookmark names what is wrong (bookmark, retention, replica); target is then
    left absent.
    """
    replicator = replicator_of(activation)
    mark = parse(activation, text)
    label = _label(activation)
    # A time may lie in a generation before the bookmark's (the object moved or was
    # restored since): each generation's history begins where the one before it ends,
    # so the newest one that holds a state before the time is the one.
    generations = [mark.generation]
    if mark.txid is None:
        generations = range(mark.generation, 0, -1)
    result = None
    timeout = max(60.0, replicator.settings.sync_timeout)
    for generation in generations:
        url = replicator.settings.shard_replica_url(label, activation.hex, generation)
        restore = functools.partial(
            replication.restore, target, url, overwrite=True, shard=(label, activation.hex)
        )
        try:
            result = await _on_thread(
                replicator,
                restore,
                txid=mark.txid,
                timestamp=None if mark.txid is not None else mark.moment,
                timeout=timeout,
            )
            break
        except replication.NoReplica:
            continue
        except replication.ReplicationError as error:
            remove_file(target)
            raise InvalidBookmark(f"Restoring {label} {activation.hex} failed: {error}") from None
    if result is None:
        remove_file(target)
        point = (
            f"transaction {mark.txid} of generation {mark.generation}"
            if mark.txid is not None
            else f"state from before {mark.moment.isoformat(timespec='milliseconds')}"
        )
        raise InvalidBookmark(
            f"The replica of {label} {activation.hex} holds no {point} (it is outside the "
            "retention window, or from before the object was first replicated); nothing "
            "was restored."
        )
    Path(f"{target}-txid").unlink(missing_ok=True)  # litestream's sidecar of the output
    try:
        info = await _on_thread(replicator, backup.check_backup, target, label=label)
        alarm = await _on_thread(replicator, backup.read_alarm, target)
        wake = await _on_thread(replicator, backup.read_wake, target)
    except backup.InvalidBackup as error:
        remove_file(target)
        raise InvalidBookmark(f"The restored database was refused: {error}") from None
    return RestorePlan(
        bookmark=text,
        generation=generation,
        txid=result.txid,
        entries=info.entries,
        tables=info.tables,
        alarm=alarm,
        size=info.size,
        wake=wake,
    )


# -- restoring the object ---------------------------------------------------------------


async def restore(activation, event, text, *, dry_run=False):
    """Make the object's database the state text names; a RestorePlan.

    Runs inside event, the object's running event. With dry_run, only what the restore
    would bring back is found; nothing changes. Afterwards storage is closed to the rest
    of the event and the instance resets when the event ends.
    """
    replicator = replicator_of(activation)
    _outside_atomic(activation, "A restore")
    label = _label(activation)
    staged = spool_file(activation)
    try:
        plan = await restore_to_file(activation, text, staged)
        if dry_run:
            return plan
        _close_sockets(activation)
        await activation.before_outgoing_call(event)  # the writes before it (and the closes)
        shard = activation.shard_for_event()
        meta = shard.all_meta()
        page_size = shard.execute("PRAGMA main.page_size").fetchone()[0]
        shard.end_event(ok=True)
        shard.commit(activation.epoch)  # a read: ends the transaction, checks the fence
        await _on_thread(
            replicator,
            backup.prepare_import,
            staged,
            hex_id=activation.hex,
            name=meta["name"] if meta["name"] is not None else activation.id.name,
            epoch=activation.epoch,
            created_at=meta["created_at"],
            sockets=[],
            page_size=page_size,
        )
        generation = await _new_generation(activation, replicator)
        if activation.closed or not activation.host.holds(activation.hex):
            raise ObjectReset("The object moved while its restore was prepared; nothing changed.")
        await _on_thread(replicator, _swap, replicator, activation, staged, generation)
    finally:
        remove_file(staged)
    lineage = await activation.host.placement.lineage(activation.hex)
    activation.replica_gen = generation
    activation.retiring = range(int(lineage.get("floor", 1)), generation)
    activation.restored = ObjectReset(
        "The object was restored to an earlier point; its instance resets after this event."
    )
    due = plan.wake  # the alarm, or a schedule or queued task before it
    activation.host.alarms.schedule(label, activation.hex, due)
    activation.alarm_due = due
    activation.host.catalog.touch(activation)
    # The new generation's replica gets its whole copy now: a failover before the next
    # write must restore the restored state, not the one before it.
    await replicator.replicate(activation, first=True)
    return plan


def _close_sockets(activation):
    ctx = activation.ctx
    if ctx is None:
        return
    for ws in ctx.get_websockets():
        ws.close(CLOSE_RESTORED, REASON_RESTORED)


async def _new_generation(activation, replicator):
    """The generation after every one the object had; recorded in a cluster's lineage."""
    placement = activation.host.placement
    lineage = await placement.lineage(activation.hex)
    local = replication.local_generation(activation.path)
    generation = max(int(lineage.get("gen", 0)), local or 0, activation.replica_gen or 0) + 1
    if placement.distributed and not await placement.confirm(
        activation.hex, "gen", generation, replicator.machine
    ):
        raise FencedError("A newer activation of this object claimed it meanwhile.")
    return generation


def _swap(replicator, activation, staged, generation):
    """On a thread: the restored file becomes the shard, in a new generation."""
    path = activation.path
    with replicator._lock(path):
        replicator._unregister(path)  # the old generation's replica ends here
        shutil.rmtree(litestream_dir(path), ignore_errors=True)
        backup.swap_in(path, staged, synchronous=get_config()["SYNCHRONOUS"])
        replication.set_local_generation(path, generation)


async def stage_copy(activation, text):
    """Restore the state text names into a spool file of its own; (path, RestorePlan)."""
    target = spool_file(activation)
    return target, await restore_to_file(activation, text, target)


# -- ctx.storage -------------------------------------------------------------------------


def _running(storage):
    """(activation, event) of the event running now in storage's object."""
    from durable_objects.events.base import current_event

    running = current_event.get()
    if running is None or running[0] is not storage._activation:
        raise RuntimeError(
            "Bookmarks are taken and restored from the object's own events (handlers, "
            "the constructor); from outside use manage.py restore_object."
        )
    return running


class PointInTimeMixin:
    """Cloudflare's point-in-time recovery on ``ctx.storage``; each method is async."""

    async def get_current_bookmark(self) -> str:
        """A bookmark of the state now (the event's writes so far commit and replicate)."""
        activation, event = _running(self)
        return await current_bookmark(activation, event)

    async def get_bookmark_for_time(self, when) -> str:
        """A bookmark of the last state before when (an aware datetime or UNIX seconds)."""
        activation, _ = _running(self)
        return bookmark_for_time(activation, when)

    async def on_next_session_restore_bookmark(self, bookmark: str) -> str:
        """Restore the database to bookmark; the instance resets after this event.

        The restore is checked and made now (InvalidBookmark names what is wrong, the
        database untouched); the rest of the event has no storage, and the next event
        constructs the object on the restored database. Returns the bookmark.
        """
        activation, event = _running(self)
        _refuse_second_restore(activation)
        await restore(activation, event, bookmark)
        return bookmark


def _refuse_second_restore(activation):
    if activation.restored is not None:
        raise activation.restored
