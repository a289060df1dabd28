"""Export, import and copy of one object's database, from any process of the deployment.

The functions run the ``backup`` events (``events.py``) in the object's live instance,
wherever it lives, and move the file in chunks: to the caller for an export, from it for
an import, from one object's holder to the other's for a copy. docs/topics/backups.md.
"""

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from asgiref.sync import async_to_sync

from durable_objects.conf import get_config
from durable_objects.events.base import current_event
from durable_objects.runtime.calls import call
from durable_objects.storage.backup import SQLITE_HEADER, InvalidBackup, check_size
from durable_objects.storage.replication.bookmarks import unix_seconds

from .events import BackupOperation, chunk_size


@dataclass(frozen=True)
class ExportResult:
    """An exported database: the file written and its size in bytes."""

    path: Path | None
    size: int


@dataclass(frozen=True)
class ImportResult:
    """An imported database: whose it was, what it holds, the alarm it brought."""

    source_id: str
    source_name: str | None
    schema_version: int
    entries: int
    tables: list
    alarm: dict | None
    size: int

    def summary(self):
        """What the database holds, in words: "3 entries, 1 table"."""
        return _holds(self.entries, self.tables)


@dataclass(frozen=True)
class RestoreSummary:
    """A restore (or its dry run): the bookmark, the generation and transaction it came
    from, and what the restored database holds."""

    dry_run: bool
    bookmark: str
    generation: int
    txid: int
    entries: int
    tables: list
    alarm: dict | None
    size: int

    def summary(self):
        """What the restored database holds, in words: "3 entries, 1 table"."""
        return _holds(self.entries, self.tables)


def _holds(entries, tables):
    """What a database holds, in words: "3 entries, 1 table"."""
    entries = f"{entries} entr{'y' if entries == 1 else 'ies'}"
    tables = f"{len(tables)} table{'' if len(tables) == 1 else 's'}"
    return f"{entries}, {tables}"


async def _run(cls, object_id, op, **fields):
    return await call(cls, object_id, BackupOperation(op, name=object_id.name, **fields))


async def _chunks(cls, object_id, spooled):
    """Yield the chunks of a file spooled in the object's holder, in order."""
    offset, size, length = 0, spooled["size"], chunk_size()
    while offset < size:
        chunk = await _run(
            cls, object_id, "read", token=spooled["token"], offset=offset, length=length
        )
        if not chunk:
            raise OSError(f"The export ended at {offset} of {size} bytes; try again.")
        offset += len(chunk)
        yield chunk


async def _discard(cls, object_id, token):
    if token is not None:
        with contextlib.suppress(Exception):  # best effort: stale spool files expire anyway
            await _run(cls, object_id, "discard", token=token)


async def aexport_to(cls, object_id, file):
    """Write a consistent copy of the object's database to file (binary, writable)."""
    spooled = await _run(cls, object_id, "export")
    try:
        async for chunk in _chunks(cls, object_id, spooled):
            file.write(chunk)
    finally:
        await _discard(cls, object_id, spooled["token"])
    return ExportResult(path=None, size=spooled["size"])


async def aexport_object(cls, object_id, path):
    """Write a consistent copy of the object's database to path; an ExportResult.

    The copy is one SQLite file, taken as an event of the live instance: it holds every
    write made before the export and no part of a later one. path is written whole or
    not at all.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(partial, "wb") as file:
            result = await aexport_to(cls, object_id, file)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return ExportResult(path=path, size=result.size)


async def aimport_object(cls, object_id, source):
    """Replace the object's database by source (a path, or a binary file); an ImportResult.

    The file is checked before anything changes (docs/topics/backups.md lists how), a
    file over MAX_IMPORT_SIZE is refused before it is read in full, and InvalidBackup
    says what is wrong. Afterwards the instance is reset; the next event constructs it
    on the imported database, with the imported alarm set again.
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        check_size(path.stat().st_size, get_config()["MAX_IMPORT_SIZE"], f"The file {path}")
        with open(path, "rb") as file:
            return await aimport_object(cls, object_id, file)
    size = getattr(source, "size", None)  # an UploadedFile knows its size
    if isinstance(size, int):
        check_size(size, get_config()["MAX_IMPORT_SIZE"])
    return await _import_chunks(cls, object_id, _file_chunks(source))


async def _file_chunks(file):
    length = chunk_size()
    while chunk := file.read(length):
        yield chunk


def _refuse_own_event(cls, object_id):
    """RuntimeError if the running event is the target's own: it cannot replace itself."""
    running = current_event.get()
    if running is not None and running[0].key == (cls._meta.label, str(object_id)):
        raise RuntimeError(
            "An object cannot replace its own database from one of its events (the import "
            "resets the instance that runs it); import or copy into it from outside."
        )


async def _import_chunks(cls, object_id, chunks):
    _refuse_own_event(cls, object_id)
    token, offset = None, 0
    try:
        async for chunk in chunks:
            if offset == 0 and not chunk[:16].startswith(SQLITE_HEADER[: len(chunk)]):
                raise InvalidBackup(
                    "The file is not a SQLite database (it does not begin with "
                    "'SQLite format 3'). Export one with manage.py export_object."
                )
            staged = await _run(cls, object_id, "stage", token=token, offset=offset, data=chunk)
            token, offset = staged["token"], staged["size"]
        if token is None:
            raise InvalidBackup("The file is empty: it is not a SQLite database.")
        result = await _run(cls, object_id, "import", token=token)
    except BaseException:
        await _discard(cls, object_id, token)
        raise
    return ImportResult(**result)


async def acopy_object(cls, source_id, target_id, bookmark=None):
    """Make target's database a copy of source's (both objects of cls); an ImportResult.

    With bookmark (one of the source's), the copy is of the source's state at that point,
    restored from its replica (point-in-time recovery, with replication on).
    """
    if str(source_id) == str(target_id):
        raise ValueError("copy() needs two different objects; the source is the target.")
    _refuse_own_event(cls, target_id)
    spooled = await _run(cls, source_id, "export", bookmark=bookmark)
    try:
        return await _import_chunks(cls, target_id, _chunks(cls, source_id, spooled))
    finally:
        await _discard(cls, source_id, spooled["token"])


async def arestore_object(cls, object_id, *, bookmark=None, when=None, dry_run=False):
    """Restore the object to bookmark, or to its state at when; a RestoreSummary.

    when is an aware datetime or UNIX seconds. Runs as an event of the live instance,
    wherever it lives; with dry_run it only says what the restore would bring back.
    InvalidBookmark (a ValueError) names what is wrong; the database is then untouched.
    """
    if (bookmark is None) == (when is None):
        raise ValueError("Restore to a bookmark or to a time: give exactly one of the two.")
    if when is not None:
        when = unix_seconds(when)
    _refuse_own_event(cls, object_id)
    result = await _run(cls, object_id, "restore", bookmark=bookmark, when=when, dry_run=dry_run)
    return RestoreSummary(dry_run=dry_run, **result)


def export_object(cls, object_id, path):
    """aexport_object() for sync code (commands, views)."""
    return async_to_sync(aexport_object)(cls, object_id, path)


def import_object(cls, object_id, source):
    """aimport_object() for sync code (commands, views)."""
    return async_to_sync(aimport_object)(cls, object_id, source)


def copy_object(cls, source_id, target_id, bookmark=None):
    """acopy_object() for sync code (commands, views)."""
    return async_to_sync(acopy_object)(cls, source_id, target_id, bookmark)


def restore_object(cls, object_id, *, bookmark=None, when=None, dry_run=False):
    """arestore_object() for sync code (commands, views)."""
    return async_to_sync(arestore_object)(
        cls, object_id, bookmark=bookmark, when=when, dry_run=dry_run
    )
