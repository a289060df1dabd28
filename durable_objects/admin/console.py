"""The admin's SQL console: one statement on a read-only connection to a shard.

Three locks, each enough on its own for writes: the file is opened with
``?mode=ro`` (SQLite refuses to write it), ``PRAGMA query_only`` is on, and an
authorizer allows only reading (SELECT, reads of non-internal tables, functions other
than ``load_extension``, and a few read-only PRAGMAs). ATTACH is refused by the
authorizer and by a limit of zero attached databases. A progress handler stops a
statement after ``TIME_LIMIT`` seconds (the object's other events wait for it), and no
string or blob it makes may exceed ``MAX_LENGTH``.
"""

import sqlite3
import time

from durable_objects.exceptions import ForbiddenQuery
from durable_objects.storage.authorizer import ALLOWED_PRAGMAS
from durable_objects.storage.files import open_read_only

TIME_LIMIT = 2.0  # seconds one console statement may run
MAX_LENGTH = 16 * 1024 * 1024  # bytes of the largest string or blob a statement may make
# The shard's own PRAGMA allowlist, less the one that sets something, plus two counts.
READ_ONLY_PRAGMAS = (ALLOWED_PRAGMAS - {"defer_foreign_keys"}) | {"page_count", "freelist_count"}
_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE}
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

    def __call__(self, action, arg1, arg2, db_name, trigger):
        reason = self._refuse(action, arg1, arg2)
        if reason is None:
            return sqlite3.SQLITE_OK
        self.refusal = reason
        return sqlite3.SQLITE_DENY

    def _refuse(self, action, arg1, arg2):
        if action == sqlite3.SQLITE_READ:
            if isinstance(arg1, str) and arg1.lower().startswith("_do_"):
                return f"internal table {arg1} is not shown in the console"
            return None
        if action in _ALLOWED:
            return None
        if action == sqlite3.SQLITE_FUNCTION:
            if (arg2 or "").lower() == "load_extension":
                return "load_extension() is not allowed"
            return None
        if action == sqlite3.SQLITE_PRAGMA:
            pragma = (arg1 or "").lower()
            if pragma in READ_ONLY_PRAGMAS and not _sets_value(pragma, arg2):
                if isinstance(arg2, str) and arg2.lower().startswith("_do_"):
                    return f"internal table {arg2} is not shown in the console"
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


def run_read_only(path, sql, *, max_rows=500, time_limit=None):
    """Run one statement on a read-only connection to path; return columns and rows."""
    if time_limit is None:
        time_limit = TIME_LIMIT  # read at each call, so a test can shorten it
    if not isinstance(sql, str) or not sql.strip():
        raise ValueError("Type one SQL statement, such as SELECT * FROM sqlite_schema.")
    conn = open_read_only(path, timeout=1.0)
    try:
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_LENGTH)  # printf('%.*c', 1e9, 'x')
        conn.execute("PRAGMA query_only = ON")
        authorizer = ReadOnlyAuthorizer()
        conn.set_authorizer(authorizer)
        deadline = time.monotonic() + time_limit
        conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
        start = time.perf_counter()
        try:
            cursor = conn.execute(sql)
            rows = cursor.fetchmany(max_rows + 1)
        except sqlite3.ProgrammingError as exc:
            if "one statement at a time" in str(exc):
                raise ValueError("The console runs one statement at a time.") from None
            raise
        except sqlite3.DatabaseError as exc:
            if authorizer.refusal is not None:
                raise ForbiddenQuery(f"Query refused: {authorizer.refusal}.") from None
            if str(exc) == "interrupted":
                raise TimeoutError(
                    f"The query ran past {time_limit:g} s and was stopped; "
                    "add a LIMIT or a WHERE clause."
                ) from None
            if "readonly" in str(exc) or "read-only" in str(exc):
                raise ForbiddenQuery(f"Query refused: the console is read-only ({exc}).") from None
            raise
        elapsed = (time.perf_counter() - start) * 1000
        columns = [column[0] for column in cursor.description or ()]
        return {
            "columns": columns,
            "rows": [list(row) for row in rows[:max_rows]],
            "truncated": len(rows) > max_rows,
            "elapsed_ms": round(elapsed, 2),
        }
    finally:
        conn.close()
