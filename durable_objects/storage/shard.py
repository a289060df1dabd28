"""The per-object SQLite shard: connection, internal tables, transactions and the fence.

One file per object, ``<root>/<app_label>/<ClassName>/<id[:2]>/<id>.sqlite3``, in WAL mode.
Internal tables are prefixed ``_do_``; user SQL is checked by SQLite's authorizer
(see ``authorizer.py``) and never reaches them. The runtime's own statements name them
``main._do_...``, so no temp object of the same name could ever stand in for one.
"""

import functools
import os
import sqlite3
import time
from contextlib import contextmanager

from durable_objects.exceptions import FencedError

from .authorizer import Authorizer
from .files import create_file, file_size, shard_path  # noqa: F401  (shard_path: re-exported)
from .schema import _SCHEMA, INTERNAL, PAGE_SIZES, SCHEMA_VERSION, template


class Shard:
    """An open SQLite database of one object, with the transaction the runtime drives.

    The runtime opens one transaction per batch of events (BEGIN), one savepoint per event
    (opened lazily on first storage use), and commits the batch with a fencing check.
    """

    def __init__(self, path, *, synchronous="FULL", immediate=False, page_size=4096):
        self.path = path
        self.synchronous = synchronous
        self.page_size = page_size  # of a file this shard creates; a file keeps its own
        # Take the write lock when a batch begins. Needed when another process writes the
        # file too (Litestream's own bookkeeping tables, with replication on): a deferred
        # transaction whose snapshot went stale could not become a writer, and fails at
        # once with "database is locked" instead of waiting its turn.
        self.begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"
        self.authorizer = Authorizer()
        self.conn = None
        # The _do_meta rows the last open wrote, if it wrote them all: in a file the open
        # created, nothing else is there yet (no alarm, no schedule) to read back.
        self.written_meta = None
        self.event_scope = None  # None, "transaction" or "savepoint": how the event began
        self.atomic_depth = 0
        self._savepoint_counter = 0
        self._changes_at_begin = 0

    # -- opening and closing -------------------------------------------------------------

    def open(self, *, label, hex_id, name):
        """Open the file, creating it and its internal tables if needed; return created."""
        return self._open(label=label, hex_id=hex_id, name=name, claim=False)[0]

    def open_and_claim(self, *, label, hex_id, name):
        """Open (or create) the file and claim a new epoch; return (created, epoch).

        A new shard's epoch is claimed in the transaction that writes its _do_meta rows,
        so creating one costs a single SQLite transaction before the object's first write.
        """
        created, epoch = self._open(label=label, hex_id=hex_id, name=name, claim=True)
        return created, epoch if epoch is not None else self.claim_epoch()

    def _open(self, *, label, hex_id, name, claim):
        """Open the file; return (created, the epoch claimed on the way or None).

        A new shard is the template file (``template()``), synced before SQLite opens it;
        its _do_meta rows are committed without a sync, and are durable with the object's
        first durable commit, as is the file's name: that commit's sync of the new WAL
        also syncs the directory (SQLite's unix VFS does, for every new WAL), so the
        directory is synced here only where SQLite would not (``wal_syncs_directory``).
        A crash before that commit acknowledged nothing; it leaves no shard, or one
        without its rows, which the next open fills in (``_write_meta``).
        """
        if self.page_size not in PAGE_SIZES and not self.path.exists():
            # SQLite would make 4,096-byte pages without a word (check E023 says so too).
            raise ValueError(
                f"SHARD_PAGE_SIZE must be a power of two from 512 to 65536, not "
                f"{self.page_size!r}; the shard was not created."
            )
        created = not self.path.exists() and create_file(
            self.path,
            template(self.page_size),
            sync_directory=not wal_syncs_directory(self.synchronous),
        )
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=256,
            timeout=5.0,
        )
        self.conn = conn
        conn.set_authorizer(self.authorizer)
        self.written_meta = None
        epoch = None
        if self.execute("PRAGMA main.user_version").fetchone()[0] < SCHEMA_VERSION:
            # An older shard (or an empty file): WAL mode is stored in the file, so only
            # a new one is switched; the tables it lacks are added.
            self.execute("PRAGMA main.journal_mode=WAL")
            epoch = self._create_schema(label=label, hex_id=hex_id, name=name, claim=claim)
        elif created or self.meta("epoch") is None:
            epoch = self._write_meta(label=label, hex_id=hex_id, name=name, claim=claim)
        self.execute(f"PRAGMA main.synchronous={self.synchronous}")
        return created, epoch

    def _write_meta(self, *, label, hex_id, name, claim):
        """Commit a new shard's _do_meta rows without a sync (the next durable one covers it).

        OFF, not NORMAL: under NORMAL SQLite still syncs a new WAL's header (and its
        directory) at once. Under OFF both wait for the object's first durable commit,
        whose sync of the WAL holds these frames too; before it nothing was acknowledged,
        and a crash loses at most these rows, whose absence the next open repairs. With
        claim, the epoch is bumped in the same transaction and returned (as
        ``claim_epoch``, whose bump needs no sync either).
        """
        self.execute("PRAGMA main.synchronous=OFF")
        self.execute("BEGIN IMMEDIATE")
        try:
            epoch = self._insert_meta(label, hex_id, name, claim)
            self.execute("COMMIT")
        except BaseException:
            self.written_meta = None
            self.execute("ROLLBACK")
            raise
        return epoch

    def _create_schema(self, *, label, hex_id, name, claim):
        self.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                self.execute(statement)
            self.execute(f"PRAGMA main.user_version={SCHEMA_VERSION}")
            epoch = self._insert_meta(label, hex_id, name, claim)
            self.execute("COMMIT")
        except BaseException:
            self.written_meta = None
            self.execute("ROLLBACK")
            raise
        return epoch

    def _insert_meta(self, label, hex_id, name, claim):
        """Insert the _do_meta rows missing (in a transaction); claim the epoch if asked.

        Rows another opener wrote first stay, so two openers never share an epoch.
        """
        rows = _meta_rows(label, hex_id, name)
        inserted = self.executemany(
            "INSERT OR IGNORE INTO main._do_meta(key, value) VALUES (?, ?)", rows
        ).rowcount
        epoch = self._bump_epoch() if claim else None
        if inserted == len(rows):
            self.written_meta = {**dict(rows), "epoch": epoch if claim else 0}
        return epoch

    def close(self, closer=None):
        """Close the connection, through closer(conn.close) if given.

        Closing the last connection of a WAL database checkpoints it (an fsync), so the
        runtime hands the close to a thread instead of paying it on the event loop.
        """
        conn, self.conn = self.conn, None
        if conn is not None:
            if closer is None:
                conn.close()
            else:
                closer(conn.close)
        self.event_scope = None
        self.atomic_depth = 0

    @property
    def is_open(self):
        return self.conn is not None

    # -- internal statements -------------------------------------------------------------

    def execute(self, sql, params=()):
        """Run an internal statement, bypassing the authorizer."""
        authorizer = self.authorizer
        authorizer.internal_depth += 1  # inline, not a context manager: this is the hot path
        try:
            return self.conn.execute(INTERNAL + sql, params)
        finally:
            authorizer.internal_depth -= 1

    def executemany(self, sql, rows):
        authorizer = self.authorizer
        authorizer.internal_depth += 1
        try:
            return self.conn.executemany(INTERNAL + sql, rows)
        finally:
            authorizer.internal_depth -= 1

    def meta(self, key):
        row = self.execute("SELECT value FROM main._do_meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def all_meta(self):
        """Every _do_meta entry (label, id, name, created_at, epoch) in one query."""
        return dict(self.execute("SELECT key, value FROM main._do_meta").fetchall())

    @property
    def name(self):
        return self.meta("name")

    def set_name(self, name):
        """Record the object's name on a shard first opened through its hex ID."""
        self.execute("UPDATE main._do_meta SET value = ? WHERE key = 'name'", (name,))

    # -- the fencing epoch ---------------------------------------------------------------

    def claim_epoch(self):
        """Bump the epoch stored in the shard and return it (this activation's fence).

        The bump is visible to every other connection at once; it is committed without an
        fsync because after a power loss no previous holder is left to fence.
        """
        self.execute("PRAGMA main.synchronous=NORMAL")
        try:
            self.execute("BEGIN IMMEDIATE")
            try:
                epoch = self._bump_epoch()
                self.execute("COMMIT")
            except BaseException:
                self.execute("ROLLBACK")
                raise
        finally:
            self.execute(f"PRAGMA main.synchronous={self.synchronous}")
        return epoch

    def _bump_epoch(self):
        return self.execute(
            "UPDATE main._do_meta SET value = value + 1 WHERE key = 'epoch' RETURNING value"
        ).fetchall()[0][0]

    # -- transactions --------------------------------------------------------------------

    def touch(self):
        """Make sure the batch transaction and the current event's savepoint are open."""
        conn = self.conn
        if self.event_scope is not None:
            return
        if not conn.in_transaction:
            # The first event of a batch owns the transaction: on failure it rolls back
            # the whole of it, so it needs no savepoint of its own.
            self.execute(self.begin)
            self._changes_at_begin = conn.total_changes
            self.authorizer.wrote_schema = False
            self.event_scope = "transaction"
        else:
            self.execute("SAVEPOINT do_event")
            self.event_scope = "savepoint"

    def end_event(self, ok):
        """End the event's scope, rolling its writes back first unless ok."""
        scope, self.event_scope = self.event_scope, None
        self.atomic_depth = 0
        if self.conn is None or not self.conn.in_transaction:
            return
        if scope == "savepoint":
            if not ok:
                self.execute("ROLLBACK TO do_event")
            self.execute("RELEASE do_event")
        elif scope == "transaction" and not ok:
            self.execute("ROLLBACK")

    @property
    def in_transaction(self):
        return self.conn is not None and self.conn.in_transaction

    @property
    def dirty(self):
        """True when the open transaction may have written (its commit needs an fsync)."""
        return self.conn.total_changes != self._changes_at_begin or self.authorizer.wrote_schema

    def commit(self, epoch):
        """Commit the batch if the shard's epoch is still ``epoch``; else roll back and raise."""
        if not self.in_transaction:
            return
        stored = self.meta("epoch")
        if stored != epoch:
            self.execute("ROLLBACK")
            raise FencedError(
                f"Commit refused: the shard's epoch is {stored}, this activation holds {epoch}. "
                "A newer activation of the object exists; this instance is dropped."
            )
        self.execute("COMMIT")

    def rollback(self):
        if self.in_transaction:
            self.execute("ROLLBACK")
        self.event_scope = None
        self.atomic_depth = 0

    @contextmanager
    def savepoint(self):
        """A nested savepoint: released on success, rolled back on any exception."""
        self.touch()
        self._savepoint_counter += 1
        name = f"do_atomic_{self._savepoint_counter}"
        self.execute(f"SAVEPOINT {name}")
        self.atomic_depth += 1
        try:
            yield
        except BaseException:
            if self.conn is not None and self.conn.in_transaction:
                self.execute(f"ROLLBACK TO {name}")
                self.execute(f"RELEASE {name}")
            raise
        else:
            self.execute(f"RELEASE {name}")
        finally:
            self.atomic_depth -= 1

    # -- size ----------------------------------------------------------------------------

    def database_size(self):
        page_count = self.execute("PRAGMA main.page_count").fetchone()[0]
        page_size = self.execute("PRAGMA main.page_size").fetchone()[0]
        return page_count * page_size


@functools.cache
def _sqlite_syncs_directories():
    """True if SQLite syncs the directory of a new WAL at its first sync (unix VFS)."""
    if os.name != "posix":
        return False
    conn = sqlite3.connect(":memory:")
    try:
        options = {row[0] for row in conn.execute("PRAGMA compile_options")}
    finally:
        conn.close()
    return not options & {"DISABLE_DIRSYNC", "NO_SYNC"}


def wal_syncs_directory(synchronous):
    """True if a shard's first durable commit at this level also syncs its directory.

    At FULL and EXTRA a WAL commit is synced, and SQLite's unix VFS syncs the directory
    of a WAL file after its first sync, which makes the new shard's own name durable
    too (both names are in that directory). At NORMAL no commit is synced.
    """
    return str(synchronous).upper() in ("FULL", "EXTRA") and _sqlite_syncs_directories()


def _meta_rows(label, hex_id, name):
    return [
        ("label", label),
        ("id", hex_id),
        ("name", name),
        ("created_at", time.time()),
        ("epoch", 0),
    ]
