"""The admin's SQL console: one statement on a read-only connection to a shard.

Three locks, each enough on its own for writes: the file is opened with
``?mode=ro`` (SQLite refuses to write it), ``PRAGMA query_only`` is on, and an
authorizer allows only reading (SELECT, reads of non-internal tables, the functions of
the shard's list, and a few read-only PRAGMAs). ATTACH is refused by the authorizer and
by a limit of zero attached databases.

Three bounds keep a statement from taking the host down (issue 13): a watchdog thread
interrupts it after ``TIME_LIMIT`` seconds of wall-clock time, however few and slow its
steps (a progress handler checks the same deadline between steps); no string or blob it
makes or reads may exceed ``MAX_LENGTH`` and no row may have more than ``MAX_COLUMNS``
columns; and rows are fetched one at a time until ``MAX_BYTES`` of values have been read,
so at most that much, plus one row, is ever held.
"""

import sqlite3
import threading
import time

from durable_objects.exceptions import ForbiddenQuery
from durable_objects.storage.authorizer import (
    ALLOWED_PRAGMAS,
    below_tables_refusal,
    function_refusal,
    internal_name_in,
)
from durable_objects.storage.files import open_read_only

TIME_LIMIT = 2.0  # seconds one console statement may run
MAX_LENGTH = 1024 * 1024  # bytes of the largest string or blob a statement may make or read
MAX_COLUMNS = 64  # columns of a result row (SQLite's own limit is 2000)
MAX_BYTES = 8 * 1024 * 1024  # bytes of values read before the result is cut
# The shard's own PRAGMA allowlist, less the one that sets something, plus two counts.
READ_ONLY_PRAGMAS = (ALLOWED_PRAGMAS - {"defer_foreign_keys"}) | {"page_count", "freelist_count"}
_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE}
_SCHEMA_TABLES = {"sqlite_master", "sqlite_temp_master"}
_ACTIONS = (
    "CREATE_INDEX CREATE_TABLE CREATE_TEMP_INDEX CREATE_TEMP_TABLE CREATE_TEMP_TRIGGER "
    "CREATE_TEMP_VIEW CREATE_TRIGGER CREATE_VIEW DELETE DROP_INDEX DROP_TABLE "
    "DROP_TEMP_INDEX DROP_TEMP_TABLE DROP_TEMP_TRIGGER DROP_TEMP_VIEW DROP_TRIGGER DROP_VIEW "
    "INSERT TRANSACTION UPDATE ALTER_TABLE REINDEX ANALYZE CREATE_VTABLE DROP_VTABLE SAVEPOINT"
)
_NAMES = {getattr(sqlite3, f"SQLITE_{name}"): name.replace("_", " ") for name in _ACTIONS.split()}


class ReadOnlyAuthorizer:
    """Allows reading and nothing else; remembers why it refused."""

    def __init__(self):
        self.refusal = None

    def __call__(self, action, arg1, arg2, db_name, source):
        reason = self._refuse(action, arg1, arg2, source)
        if reason is None:
            return sqlite3.SQLITE_OK
        self.refusal = reason
        return sqlite3.SQLITE_DENY

    def _refuse(self, action, arg1, arg2, source):
        name = internal_name_in(action, arg1, arg2, source)
        if name is not None:
            return f"internal table {name} is not shown in the console"
        if action == sqlite3.SQLITE_READ:
            return below_tables_refusal(action, arg1, arg2)
        if action in _ALLOWED:
            return None
        if action == sqlite3.SQLITE_UPDATE and arg1 in _SCHEMA_TABLES and source is None:
            # SQLite asks this while it sets up a table-valued function (json_each,
            # pragma_table_info); SQL itself may not write the schema table, and the
            # file is read-only besides.
            return None
        if action == sqlite3.SQLITE_FUNCTION:
            return function_refusal(arg2)
        if action == sqlite3.SQLITE_PRAGMA:
            pragma = (arg1 or "").lower()
            if pragma in READ_ONLY_PRAGMAS and not _sets_value(pragma, arg2):
                return None
            return (
                f"PRAGMA {pragma} is not allowed in the read-only console; allowed: "
                + ", ".join(sorted(READ_ONLY_PRAGMAS))
            )
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            return "ATTACH and DETACH are not allowed: the console sees only this object"
        return (
            f"the console is read-only: {_NAMES.get(action, action)} is not allowed "
            "(use SELECT, or the actions on the object's page to change it)"
        )


def _sets_value(pragma, argument):
    # The PRAGMAs above take a table or index name; page_count and friends take none.
    return pragma in {"page_count", "freelist_count", "data_version"} and argument is not None


class Watchdog:
    """Interrupts a connection's running statement once ``seconds`` have passed."""

    def __init__(self, conn, seconds):
        self._conn = conn
        self._lock = threading.Lock()
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc_info):
        self._timer.cancel()
        with self._lock:  # no interrupt() may reach the connection once this returns
            self._conn = None

    def _fire(self):
        with self._lock:
            if self._conn is not None:
                self.fired = True
                self._conn.interrupt()


def _row_size(row):
    """Bytes of a row's values, as held in Python (numbers and NULL count 8)."""
    return sum(len(value) if isinstance(value, str | bytes) else 8 for value in row)


def _human(size):
    return f"{size / (1024 * 1024):g} MiB" if size >= 1024 * 1024 else f"{size:,} bytes"


def run_read_only(path, sql, *, max_rows=500, time_limit=None, max_bytes=None):
    """Run one statement on a read-only connection to path; return columns and rows.

    The result is cut after max_rows rows or once max_bytes of values were read,
    whichever comes first; ``truncated`` says so and ``notice`` says why.
    """
    if time_limit is None:
        time_limit = TIME_LIMIT  # read at each call, so a test can shorten them
    if max_bytes is None:
        max_bytes = MAX_BYTES
    if not isinstance(sql, str) or not sql.strip():
        raise ValueError("Type one SQL statement, such as SELECT * FROM sqlite_schema.")
    conn = open_read_only(path, timeout=1.0)
    try:
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_LENGTH)  # printf('%.*c', 1e9, 'x')
        conn.execute("PRAGMA query_only = ON")
        # The column limit applies to parsing the schema too: read it first, so a wide
        # table of the object's stays readable (its columns, a few at a time).
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        conn.setlimit(sqlite3.SQLITE_LIMIT_COLUMN, MAX_COLUMNS)
        authorizer = ReadOnlyAuthorizer()
        conn.set_authorizer(authorizer)
        deadline = time.monotonic() + time_limit
        conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
        start = time.perf_counter()
        with Watchdog(conn, time_limit):
            result = _fetch(conn, sql, authorizer, time_limit, max_rows, max_bytes)
        result["elapsed_ms"] = round((time.perf_counter() - start) * 1000, 2)
        return result
    finally:
        conn.close()


def _fetch(conn, sql, authorizer, time_limit, max_rows, max_bytes):
    rows, size, notice = [], 0, None
    try:
        cursor = conn.execute(sql)
        columns = [column[0] for column in cursor.description or ()]
        while (row := cursor.fetchone()) is not None:
            if len(rows) == max_rows:
                notice = f"Only the first {max_rows} rows are shown."
                break
            size += _row_size(row)
            rows.append(list(row))
            if size > max_bytes:
                notice = (
                    f"The result was cut after {len(rows)} rows: the console reads at most "
                    f"{_human(max_bytes)} of values. Select fewer or shorter columns "
                    "(length(column), substr(column, 1, 100)) or add a LIMIT."
                )
                break
    except sqlite3.ProgrammingError as exc:
        if "one statement at a time" in str(exc):
            raise ValueError("The console runs one statement at a time.") from None
        raise
    except sqlite3.DatabaseError as exc:
        if authorizer.refusal is not None:
            raise ForbiddenQuery(f"Query refused: {authorizer.refusal}.") from None
        message = str(exc)
        if message == "interrupted":
            raise TimeoutError(
                f"The query ran past {time_limit:g} s and was stopped; "
                "add a LIMIT or a WHERE clause."
            ) from None
        if "too big" in message:
            raise ValueError(
                f"A string or blob in the query is larger than the console's limit of "
                f"{_human(MAX_LENGTH)} ({message}); leave that column out or select "
                "length(column) instead."
            ) from None
        if "too many columns" in message:
            raise ValueError(
                f"The console shows at most {MAX_COLUMNS} columns ({message}); name the "
                "columns you need."
            ) from None
        if "readonly" in message or "read-only" in message:
            raise ForbiddenQuery(f"Query refused: the console is read-only ({exc}).") from None
        raise
    return {"columns": columns, "rows": rows, "truncated": notice is not None, "notice": notice}
