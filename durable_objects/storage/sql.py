"""``ctx.storage.sql``: SQL on the object's own database, with Cloudflare's cursor API."""

import sqlite3

from durable_objects.exceptions import ForbiddenQuery

from .schema import INTERNAL, INTERNAL_TABLES

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


class _Buffered:
    """A cursor whose rows were all fetched already: ``fetchall()`` and ``description``."""

    def __init__(self, cursor):
        self.description = cursor.description
        self._rows = cursor.fetchall()

    def fetchall(self):
        rows, self._rows = self._rows, []
        return rows


def _taken_internal_names(shard):
    """Names in the schemas that start with ``_do_`` but are not the runtime's tables."""
    rows = shard.execute(
        "SELECT 'main', name FROM main.sqlite_schema UNION ALL "
        "SELECT 'temp', name FROM temp.sqlite_schema"
    ).fetchall()
    # The indexes SQLite names sqlite_autoindex__do_... belong to the internal tables;
    # SQL cannot name an index sqlite_... itself.
    return [
        name
        for schema, name in rows
        if name.lower().startswith("_do_") and (schema != "main" or name not in INTERNAL_TABLES)
    ]


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
        try:
            return self._execute_one(shard, query, bindings)
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
            cursor = self._execute_one(shard, statement, ())
        return cursor

    def _execute_one(self, shard, query, bindings):
        # SQL keywords cannot be quoted or split by comments, so a statement without
        # "alter" in its text cannot be an ALTER TABLE (the authorizer refuses one that
        # is not checked here, should it ever be).
        if "alter" not in query.lower():
            return shard.conn.execute(query, bindings)
        return self._execute_alter(shard, query, bindings)

    def _execute_alter(self, shard, query, bindings):
        """Run a statement that may be an ALTER TABLE, then check the names it left.

        The new name of ``ALTER TABLE ... RENAME TO`` is never passed to the authorizer
        (nor the names FTS5 gives its shadow tables when their table is renamed), so a
        statement that leaves a table named like an internal one is undone and refused.
        """
        shard.execute("SAVEPOINT do_alter")
        shard.authorizer.alter_checked = True
        try:
            cursor = shard.conn.execute(query, bindings)
            if cursor.description is not None:
                # A statement that returns rows may still be running; finish it first
                # so the check below sees what it did.
                cursor = _Buffered(cursor)
            taken = _taken_internal_names(shard)
        except BaseException:
            shard.authorizer.alter_checked = False
            if shard.in_transaction:
                shard.execute("ROLLBACK TO do_alter")
                shard.execute("RELEASE do_alter")
            raise
        shard.authorizer.alter_checked = False
        if taken:
            shard.execute("ROLLBACK TO do_alter")
            shard.execute("RELEASE do_alter")
            raise ForbiddenQuery(
                f"Query refused: it would name a table {taken[0]}; names starting with _do_ "
                "are reserved for the runtime's internal tables."
            )
        shard.execute("RELEASE do_alter")
        return cursor

    @property
    def database_size(self):
        """Bytes used by the object's database (pages times page size)."""
        shard = self._storage._existing_shard()
        return 0 if shard is None else shard.database_size()
