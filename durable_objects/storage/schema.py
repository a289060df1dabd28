"""A shard's internal schema: the ``_do_`` tables, their version, the empty-shard template.

``shard.Shard`` creates and upgrades shards from it; ``sql`` and ``backup`` read the
names of the internal tables and the statements' nonce from here.
"""

import functools
import secrets
import sqlite3
import tempfile
from pathlib import Path

from .alarm import ALARM_SCHEMA
from .schedules import QUEUE_SCHEMA, SCHEDULES_INDEX, SCHEDULES_SCHEMA
from .schedules import TABLES as SCHEDULE_TABLES

SOCKETS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS main._do_sockets (id TEXT PRIMARY KEY, channel TEXT NOT NULL, "
    "holder TEXT NOT NULL, tags TEXT NOT NULL, attachment BLOB, accepted_at REAL NOT NULL) "
    "WITHOUT ROWID"
)

# Internal statements carry a per-process nonce, so user SQL can never match one of them in
# sqlite3's statement cache (a cached statement is not authorized again).
INTERNAL = f"/* do:{secrets.token_hex(8)} */ "

# Version 2 added _do_sockets, 3 _do_alarm, 4 _do_schedules and _do_queue (issue 16);
# opening an older shard adds what it lacks.
SCHEMA_VERSION = 4
_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS main._do_meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS main._do_kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) "
    "WITHOUT ROWID",
    SOCKETS_SCHEMA,
    ALARM_SCHEMA,
    SCHEDULES_SCHEMA,
    SCHEDULES_INDEX,
    QUEUE_SCHEMA,
]
# The runtime's names in main (tables and their named indexes).
INTERNAL_TABLES = frozenset({"_do_meta", "_do_kv", "_do_sockets", "_do_alarm", *SCHEDULE_TABLES})


PAGE_SIZES = tuple(2**n for n in range(9, 17))  # SQLite's: 512 to 65,536 bytes


@functools.cache
def template(page_size=4096):
    """The bytes of an empty shard of page_size bytes a page: WAL mode, the internal
    tables, SCHEMA_VERSION.

    Made once per process. A new shard is this file copied in one write (``create_file``)
    instead of switching a new file to WAL and creating its tables, which costs SQLite
    several syncs (the rollback journal's, then the schema's commit) and the parsing of
    every CREATE; only the object's own _do_meta rows are written through SQLite.
    """
    with tempfile.TemporaryDirectory(prefix="durable-objects-template-") as directory:
        path = Path(directory) / "template.sqlite3"
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA main.synchronous=OFF")  # a scratch file: nothing to keep
            conn.execute(f"PRAGMA main.page_size={int(page_size)}")  # before the first write
            conn.execute("PRAGMA main.journal_mode=WAL")
            conn.execute("BEGIN")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA main.user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        finally:
            conn.close()  # the last connection checkpoints the WAL into the file
        return path.read_bytes()
