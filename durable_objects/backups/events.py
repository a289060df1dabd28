"""The ``backup`` event kind: export, transfer in chunks, and import, in the live instance.

Each operation is an event of the object, queued behind its other events, so it reaches
the object in whichever process holds it (a cluster's holder, or the embedded host).
An export writes a copy to the holder's spool (``<STORAGE_ROOT>/.backups/``) and the
caller reads it back in chunks; an import is staged there in chunks, then checked and
swapped in (``storage/backup.py``). Chunks keep every event under ``MAX_CALL_SIZE``.
"""

import asyncio
import functools
import re
import secrets
import time

from durable_objects.conf import get_config
from durable_objects.events.base import Event, WireField, wire_limit
from durable_objects.exceptions import ObjectReset
from durable_objects.runtime import restore
from durable_objects.storage import backup

SPOOL = ".backups"  # under STORAGE_ROOT; shard_files() never looks at dot directories
STALE_AFTER = 3600.0  # seconds after which a spool file left by a dead transfer is removed
_TOKEN = re.compile(r"[0-9a-f]{32}\Z")
OPERATIONS = ("export", "read", "stage", "import", "discard", "restore")


def _check_token(token):
    if not _TOKEN.match(token):
        raise ValueError("a transfer token is 32 lowercase hex digits")


class BackupOperation(Event):
    """One step of an export or import of the object's database, run as its event."""

    __slots__ = ("bookmark", "data", "dry_run", "length", "offset", "op", "token", "when")

    kind = "backup"
    wire_fields = {
        "op": WireField(str, max_size=20),
        "token": WireField(str, None, required=False, max_size=32, check=_check_token),
        "offset": WireField(int, required=False),
        "length": WireField(int, required=False),
        "data": WireField(bytes, required=False, max_size=wire_limit("MAX_CALL_SIZE")),
        "bookmark": WireField(str, None, required=False, max_size=200),
        "when": WireField(float, int, None, required=False),
        "dry_run": WireField(bool, required=False),
    }

    def __init__(
        self,
        op,
        token=None,
        offset=0,
        length=0,
        data=b"",
        bookmark=None,
        when=None,
        dry_run=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if op not in OPERATIONS:
            raise ValueError(f"Unknown backup operation {op!r}; one of {OPERATIONS}.")
        if token is not None:
            _check_token(token)
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be >= 0")
        self.op = op
        self.token = token
        self.offset = offset
        self.length = length
        self.data = data
        self.bookmark = bookmark  # export and restore: an earlier state (point in time)
        self.when = when  # restore: a time (UNIX seconds) instead of a bookmark
        self.dry_run = dry_run

    def to_wire(self):
        return {
            "op": self.op,
            "token": self.token,
            "offset": self.offset,
            "length": self.length,
            "data": self.data,
            "bookmark": self.bookmark,
            "when": self.when,
            "dry_run": self.dry_run,
        }

    def invoke(self, instance, activation):
        return _OPERATIONS[self.op](activation, self)

    def __repr__(self):
        return f"<BackupOperation {self.op}>"


def chunk_size():
    """Bytes of one chunk: 4 MiB, or less where MAX_CALL_SIZE is smaller."""
    return max(64 * 1024, min(4 * 1024 * 1024, get_config()["MAX_CALL_SIZE"] // 2))


# -- the spool ----------------------------------------------------------------------------


def _spool_path(activation, token):
    return activation.host.root / SPOOL / f"{activation.hex}-{token}.sqlite3"


def _existing(activation, token):
    if token is None:
        raise ValueError("This backup operation needs the token of its transfer.")
    path = _spool_path(activation, token)
    if not path.exists():
        raise LookupError(
            "No transfer with that token is spooled for this object in the process that "
            "holds it (it finished, expired, or the object moved); start again."
        )
    return path


def _new_spool_file(activation):
    folder = activation.host.root / SPOOL
    folder.mkdir(exist_ok=True)
    _remove_stale(folder)
    return _spool_path(activation, secrets.token_hex(16))


def _remove_stale(folder):
    cutoff = time.time() - STALE_AFTER
    for path in folder.glob("*.sqlite3*"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:
            pass


def _remove(path):
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _token_of(path):
    return path.stem.rsplit("-", 1)[1]


async def _on_thread(fn, *args, **kwargs):
    """Run blocking file work on a thread: the host's other objects go on meanwhile."""
    call = functools.partial(fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(None, call)


# -- operations -------------------------------------------------------------------------


async def _export(activation, event):
    """Copy the database to the spool; return its token and size."""
    # Commit the writes queued before this event, so the copy holds every write made
    # before it (and, being one snapshot, no half of any).
    if event.bookmark is not None:  # an earlier state, from the replica
        target, plan = await restore.stage_copy(activation, event.bookmark)
        return {"token": _token_of(target), "size": plan.size}
    await activation.before_outgoing_call(event)
    if not activation.path.exists():
        raise LookupError("The object has no storage yet; there is nothing to export.")
    target = _new_spool_file(activation)
    try:
        size = await _on_thread(backup.write_copy, activation.path, target)
    except BaseException:
        _remove(target)
        raise
    return {"token": _token_of(target), "size": size}


def _read(activation, event):
    """A chunk of a spooled file, from offset."""
    path = _existing(activation, event.token)
    length = min(event.length, chunk_size())
    with open(path, "rb") as file:
        file.seek(event.offset)
        return file.read(length)


def _stage(activation, event):
    """Append a chunk to a staged import (a new one without a token); token and size."""
    limit = get_config()["MAX_IMPORT_SIZE"]
    if event.token is None:
        path = _new_spool_file(activation)
        path.touch()
    else:
        path = _existing(activation, event.token)
    size = path.stat().st_size
    if event.offset != size:
        raise ValueError(f"This chunk starts at {event.offset}, but {size} bytes are staged.")
    try:
        backup.check_size(size + len(event.data), limit, "The upload")
    except backup.InvalidBackup:
        _remove(path)
        raise
    with open(path, "ab") as file:
        file.write(event.data)
    return {"token": _token_of(path), "size": size + len(event.data)}


def _discard(activation, event):
    """Remove a spooled file; True if there was one."""
    path = _spool_path(activation, event.token)
    existed = path.exists()
    _remove(path)
    return existed


async def _import(activation, event):
    """Check the staged file, make it the object's database, and reset the instance."""
    staged = _existing(activation, event.token)
    label = activation.cls._meta.label
    try:
        info = await _on_thread(
            backup.check_backup, staged, label=label, max_size=get_config()["MAX_IMPORT_SIZE"]
        )
        await activation.before_outgoing_call(event)  # the writes before it commit first
        shard = activation.shard_for_event()  # creates the shard of an object without one
        meta = shard.all_meta()
        sockets = backup.socket_rows(shard)
        page_size = shard.execute("PRAGMA main.page_size").fetchone()[0]
        shard.end_event(ok=True)
        shard.commit(activation.epoch)  # a read: ends the transaction, checks the fence
        await _on_thread(
            backup.prepare_import,
            staged,
            hex_id=activation.hex,
            name=meta["name"] if meta["name"] is not None else activation.id.name,
            epoch=activation.epoch,
            created_at=meta["created_at"],
            sockets=sockets,
            page_size=page_size,
        )
        alarm = backup.read_alarm(staged)
        due = backup.read_wake(staged)  # the alarm, or a schedule or queued task before it
        if (
            activation.closed  # reset (EVENT_DEADLINE) while the file was prepared
            or shard.meta("epoch") != activation.epoch
            or not activation.host.holds(activation.hex)
        ):
            raise ObjectReset("The object moved while the import was checked; nothing changed.")
        await _on_thread(
            backup.swap_in, activation.path, staged, synchronous=get_config()["SYNCHRONOUS"]
        )
    finally:
        _remove(staged)
    activation.host.alarms.schedule(label, activation.hex, due)  # the imported wake time
    if not activation.closed:  # else EVENT_DEADLINE reset it while the copy ran
        activation.alarm_due = due
        activation.host.catalog.touch(activation)
        # The instance holds what it read from the old database: the next event
        # constructs it again on the new one, and claims the epoch after the one carried
        # over.
        activation.reset(ObjectReset("The object's database was replaced by an import."))
    return {
        "source_id": info.hex_id,
        "source_name": info.name,
        "schema_version": info.schema_version,
        "entries": info.entries,
        "tables": list(info.tables),
        "alarm": alarm,
        "size": info.size,
    }


async def _restore(activation, event):
    """Restore the object to a bookmark or a time (a dry run changes nothing)."""
    text = event.bookmark
    if text is None:
        if event.when is None:
            raise ValueError("A restore needs a bookmark or a time.")
        text = restore.bookmark_for_time(activation, event.when)
    plan = await restore.restore(activation, event, text, dry_run=event.dry_run)
    return plan.as_dict()


_OPERATIONS = {
    "export": _export,
    "read": _read,
    "stage": _stage,
    "import": _import,
    "discard": _discard,
    "restore": _restore,
}
