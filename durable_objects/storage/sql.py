"""``ctx.storage.sql``: SQL on the object's own database, with Cloudflare's cursor API."""

import sqlite3

from durable_objects.exceptions import ForbiddenQuery

from .shard import INTERNAL

INTERNAL_MARK = INTERNAL.strip()

_BINDABLE = (type(None), int, float, str, bytes)


class SqlCursor:
    """The result of ``sql.exec()``: iterable of dict rows, fetched when the query ran."""

    def __init__(self, column_names, rows, rows_written):
        self.column_names = column_names
        self._rows = rows
        self.rows_read = len(rows)
        self.rows_written = rows_written

    def __iter__(self):
        names = self.column_names
        for row in self._rows:
            yield dict(zip(names, row, strict=True))

    def __len__(self):
        return len(self._rows)

    def to_array(self):
        """Return every row as a dict."""
        return list(self)

    def one(self):
        """Return the only row; raise ValueError unless there is exactly one."""
        if len(self._rows) != 1:
            raise ValueError(f"Expected exactly one row from the query, got {len(self._rows)}.")
        return dict(zip(self.column_names, self._rows[0], strict=True))

    def raw(self):
        """Return every row as a tuple of values in column order."""
        return list(self._rows)

    def __repr__(self):
        return f"<SqlCursor columns={self.column_names} rows={len(self._rows)}>"


def split_statements(query):
    """Split ``query`` into complete SQL statements, as SQLite's own parser sees them."""
    statements, start = [], 0
    for index, char in enumerate(query):
        if char == ";" and sqlite3.complete_statement(query[start : index + 1]):
            statement = query[start : index + 1].strip()
            if statement.strip(";").strip():
                statements.append(statement)
            start = index + 1
    rest = query[start:].strip()
    if rest:
        statements.append(rest)
    return statements


class SqlStorage:
    """SQL access to one shard; every statement runs inside the current event's transaction."""

    def __init__(self, storage):
        self._storage = storage

    def exec(self, query, *bindings):
        """Run ``query`` with ``?`` bindings and return a SqlCursor."""
        if not isinstance(query, str):
            raise TypeError(f"sql.exec() takes the query as a str, not {type(query).__name__}.")
        for index, value in enumerate(bindings):
            if not isinstance(value, _BINDABLE):
                raise TypeError(
                    f"binding {index + 1} is a {type(value).__name__}; SQL bindings must be "
                    "None, bool, int, float, str or bytes."
                )
        if INTERNAL_MARK in query:
            # The nonce keeps user SQL out of the statement cache entries of internal
            # statements (which the authorizer never sees again); never accept it back.
            raise ForbiddenQuery("Query refused: it carries the runtime's internal marker.")
        shard = self._storage._shard()
        conn = shard.conn
        before = conn.total_changes
        shard.authorizer.refusal = None
        try:
            cursor = self._execute(shard, query, bindings)
            rows = cursor.fetchall()
        except sqlite3.DatabaseError:
            refusal, shard.authorizer.refusal = shard.authorizer.refusal, None
            if refusal is not None:  # "not authorized" or "access to ... is prohibited"
                raise ForbiddenQuery(f"Query refused: {refusal}.") from None
            raise
        columns = [column[0] for column in cursor.description or ()]
        return SqlCursor(columns, rows, conn.total_changes - before)

    def _execute(self, shard, query, bindings):
        conn = shard.conn
        try:
            return conn.execute(query, bindings)
        except sqlite3.ProgrammingError as exc:
            if "one statement at a time" not in str(exc):
                raise
        statements = split_statements(query)
        if bindings:
            raise ValueError("sql.exec() takes bindings only with a single statement.")
        # Each statement is authorized on its own; a refused one stops the rest, and the
        # event's savepoint undoes the ones before it if the event fails.
        cursor = None
        for statement in statements:
            cursor = conn.execute(statement)
        return cursor

    @property
    def database_size(self):
        """Bytes used by the object's database (pages times page size)."""
        shard = self._storage._existing_shard()
        return 0 if shard is None else shard.database_size()
