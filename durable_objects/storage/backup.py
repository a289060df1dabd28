"""Copies of one shard: export to a single file, the checks an import passes, the swap.

``write_copy`` takes a consistent copy of a shard with SQLite's backup API.
``check_backup`` refuses a file that is not a shard this version can read, before
anything is written. ``prepare_import`` turns a checked file into the target object's
database (its name, its epoch, its sockets), and ``swap_in`` copies it into the target's
shard in one transaction: the shard file is never renamed or truncated under its
connections, so a crash leaves either the old database or the new one, and the WAL
(and a Litestream replica reading it) sees one more transaction. Import uses these now;
a restore to a point in time can use ``swap_in`` the same way (docs/topics/backups.md).
"""

import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from . import alarm
from .files import open_read_only
from .schema import _SCHEMA, INTERNAL_TABLES, SCHEMA_VERSION

SQLITE_HEADER = b"SQLite format 3\x00"
# The tables each schema version has (shard.py: 2 added _do_sockets, 3 _do_alarm, 4
# _do_schedules and _do_queue).
_TABLES_OF_VERSION = {
    1: {"_do_meta", "_do_kv"},
    2: {"_do_meta", "_do_kv", "_do_sockets"},
    3: {"_do_meta", "_do_kv", "_do_sockets", "_do_alarm"},
    4: {"_do_meta", "_do_kv", "_do_sockets", "_do_alarm", "_do_schedules", "_do_queue"},
}
_INTERNAL_NAME = re.compile(r"(?<![\w$])_do_", re.IGNORECASE)
_SOCKET_COLUMNS = "id, channel, holder, tags, attachment, accepted_at"


class InvalidBackup(ValueError):
    """A file that cannot replace an object's database; the message says why."""


@dataclass(frozen=True)
class BackupInfo:
    """What a checked file holds: whose database it was, its version, what is in it."""

    label: str
    hex_id: str
    name: str | None
    schema_version: int
    size: int
    entries: int
    tables: tuple


def write_copy(source, target):
    """Copy the shard file at source into a new single file at target; return its size.

    The copy is one snapshot (SQLite's backup API on a connection of its own) in rollback
    journal mode, so it is one self-contained file. Socket rows are left out: they name
    connections of this deployment, not data.
    """
    target = Path(target)
    with closing(open_read_only(source)) as reader, closing(_connect(target)) as copy:
        reader.backup(copy)
        if copy.execute(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = '_do_sockets'"
        ).fetchone():
            copy.execute("DELETE FROM main._do_sockets")
        copy.execute("PRAGMA main.journal_mode=DELETE")
    return target.stat().st_size


def check_header(path, what="The file"):
    """InvalidBackup unless the file at path begins as a SQLite database does."""
    with open(path, "rb") as file:
        header = file.read(100)
    if len(header) < 100 or not header.startswith(SQLITE_HEADER):
        raise InvalidBackup(
            f"{what} is not a SQLite database (it does not begin with "
            "'SQLite format 3'). Export one with manage.py export_object."
        )


def check_size(size, limit, what="The file"):
    """InvalidBackup if size (bytes) is over limit (None: no limit)."""
    if limit is not None and size > limit:
        raise InvalidBackup(
            f"{what} is {size} bytes; imports are limited to {limit} bytes "
            "(DURABLE_OBJECTS['MAX_IMPORT_SIZE'])."
        )


def check_backup(path, *, label, max_size=None):
    """Return a BackupInfo for the file at path, or raise InvalidBackup saying what is wrong.

    Refused: a file over max_size, one that is not SQLite, one that fails SQLite's
    integrity check, one without our internal tables or from a newer schema version,
    internal tables of another shape, unknown internal tables, triggers, views or
    indexes on internal tables (or naming them), and a database of a class other than
    label. The file is opened read only; nothing in it is changed.
    """
    path = Path(path)
    check_size(path.stat().st_size, max_size)
    check_header(path)
    try:
        with closing(_connect(path, read_only=True)) as conn:
            return _check(conn, path, label)
    except sqlite3.DatabaseError as exc:
        raise InvalidBackup(f"The file is not a readable SQLite database: {exc}.") from None


def _check(conn, path, label):
    problems = [row[0] for row in conn.execute("PRAGMA integrity_check(10)")]
    if problems != ["ok"]:
        raise InvalidBackup(
            f"The file fails SQLite's integrity check (it is corrupt): {'; '.join(problems)}."
        )
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    schema = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_schema").fetchall()
    internal = {name for kind, name, _, _ in schema if kind == "table" and _is_internal(name)}
    if "_do_meta" not in internal or version < 1:
        raise InvalidBackup(
            "The file is a SQLite database but not the database of a durable object "
            "(it has no _do_meta table or no schema version)."
        )
    if version > SCHEMA_VERSION:
        raise InvalidBackup(
            f"The file's internal schema is version {version}, newer than this version of "
            f"django-durable-objects reads (up to {SCHEMA_VERSION}). Import it with the "
            "version that exported it, or upgrade."
        )
    _check_internal_tables(schema, internal, version)
    meta = dict(conn.execute("SELECT key, value FROM main._do_meta"))
    missing = [key for key in ("label", "id", "epoch") if key not in meta]
    if missing:
        raise InvalidBackup(f"The file's _do_meta lacks {', '.join(missing)}.")
    if not isinstance(meta["epoch"], int):
        raise InvalidBackup(f"The file's epoch is {meta['epoch']!r}, not a whole number.")
    if meta["label"] != label:
        raise InvalidBackup(
            f"The file is a database of {meta['label']}, not of {label}; import it into an "
            f"object of {meta['label']}."
        )
    entries = conn.execute("SELECT count(*) FROM main._do_kv").fetchone()[0]
    tables = tuple(
        sorted(
            name
            for kind, name, _, _ in schema
            if kind == "table" and not _is_internal(name) and not name.startswith("sqlite_")
        )
    )
    return BackupInfo(
        label=meta["label"],
        hex_id=str(meta["id"]),
        name=meta.get("name"),
        schema_version=version,
        size=path.stat().st_size,
        entries=entries,
        tables=tables,
    )


def _check_internal_tables(schema, internal, version):
    unknown = sorted(internal - INTERNAL_TABLES)
    if unknown:
        raise InvalidBackup(f"The file has internal tables this version does not know: {unknown}.")
    lacking = sorted(_TABLES_OF_VERSION[version] - internal)
    if lacking:
        raise InvalidBackup(f"The file (schema version {version}) lacks the tables {lacking}.")
    expected = _expected_schema()
    for kind, name, table, sql in schema:
        if kind == "table" and name in internal:
            if _normal(sql) != expected[name]:
                raise InvalidBackup(
                    f"The file's {name} table has another shape than this version's: {sql}"
                )
        elif kind == "index" and _is_internal(table):
            if sql is not None and expected.get(name) == _normal(sql):
                continue  # one of ours (the schedules' due index)
            if sql is not None:  # an automatic index of a key has no sql: it belongs
                raise InvalidBackup(f"The file has an index {name!r} on the internal {table}.")
        elif kind in ("trigger", "view") and (
            _is_internal(name) or _is_internal(table) or _INTERNAL_NAME.search(sql or "")
        ):
            raise InvalidBackup(
                f"The file has a {kind} {name!r} on or naming an internal table; internal "
                "tables take no triggers or views."
            )
        elif _is_internal(name):
            raise InvalidBackup(f"The file has a {kind} with the internal name {name!r}.")


def _expected_schema():
    with closing(sqlite3.connect(":memory:")) as conn:
        for statement in _SCHEMA:
            conn.execute(statement)
        return {
            name: _normal(sql) for name, sql in conn.execute("SELECT name, sql FROM sqlite_schema")
        }


def _normal(sql):
    return " ".join((sql or "").split()).lower()


def _is_internal(name):
    return name is not None and name.lower().startswith("_do_")


def prepare_import(path, *, hex_id, name, epoch, created_at, sockets, page_size):
    """Make the checked file at path the database of object hex_id, in place.

    Its ``_do_meta`` takes the target's id, name, creation time and current epoch (the
    next activation claims the one after it), its socket rows are replaced by sockets
    (the target's, as rows of ``_do_sockets``), an older schema gains what it lacks, and
    a page size other than page_size (the target's) is rebuilt to it: SQLite's backup
    into a database in WAL mode needs the two to match.
    """
    with closing(_connect(path)) as conn:
        if conn.execute("PRAGMA page_size").fetchone()[0] != page_size:
            conn.execute("PRAGMA journal_mode=DELETE")
            conn.execute(f"PRAGMA page_size={int(page_size)}")
            conn.execute("VACUUM")
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.executemany(
            "INSERT INTO main._do_meta(key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [("id", hex_id), ("name", name), ("epoch", epoch), ("created_at", created_at)],
        )
        conn.execute("DELETE FROM main._do_sockets")
        conn.executemany(
            f"INSERT INTO main._do_sockets ({_SOCKET_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            sockets,
        )
        conn.execute(f"PRAGMA main.user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")


def socket_rows(shard):
    """The shard's ``_do_sockets`` rows, in the order prepare_import() takes them."""
    return shard.execute(f"SELECT {_SOCKET_COLUMNS} FROM main._do_sockets").fetchall()


def swap_in(path, source, *, synchronous="FULL", timeout=5.0):
    """Replace the whole database of the shard file at path by the file at source.

    source must have passed check_backup() and prepare_import(). The copy is one write
    transaction on a connection of its own (SQLite's backup API with the shard as the
    destination), committed with ``synchronous``: the file is never renamed or truncated,
    so other connections, the object's own included, see the old database or the new one
    and never a mix, and a crash leaves one of the two. No other connection may hold a
    transaction on the shard meanwhile (the runtime runs it as the object's event, with
    the object's batch committed first).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No shard at {path} to swap a database into.")
    with (
        closing(_connect(source, read_only=True)) as reader,
        closing(sqlite3.connect(path, isolation_level=None, timeout=timeout)) as shard,
    ):
        shard.execute(f"PRAGMA main.synchronous={synchronous}")
        reader.backup(shard)


def read_alarm(path):
    """The alarm row of the database file at path as a dict, or None (alarm.read_row's)."""
    names = ", ".join(alarm.COLUMNS)
    with closing(_connect(path, read_only=True)) as conn:
        row = conn.execute(f"SELECT {names} FROM main._do_alarm WHERE id = 1").fetchone()
    return None if row is None else dict(zip(alarm.COLUMNS, row, strict=True))


def read_wake(path):
    """When the object in the database file at path next needs a delivery, or None: the
    earliest of its alarm, its next schedule and its queue's head (``schedules.wake_at``)."""
    from .schedules import WAKE_QUERY, earliest

    with closing(_connect(path, read_only=True)) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM main.sqlite_schema")}
        if {"_do_schedules", "_do_queue"} <= names:
            return earliest(conn.execute(WAKE_QUERY).fetchone())
        row = conn.execute("SELECT due_at FROM main._do_alarm WHERE id = 1").fetchone()
    return None if row is None else row[0]


def _connect(path, *, read_only=False):
    if read_only:
        # Read only, but not SQLite's mode=ro: a file in WAL mode needs its -shm made.
        conn = sqlite3.connect(f"file:{quote(str(path))}", uri=True, isolation_level=None)
        conn.execute("PRAGMA query_only=1")
        return conn
    return sqlite3.connect(path, isolation_level=None)
