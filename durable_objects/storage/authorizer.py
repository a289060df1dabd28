"""SQLite's authorizer callback: what user SQL may do in a shard.

Refused: transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE), ATTACH and
DETACH, anything that touches an internal ``_do_`` table, PRAGMAs outside ALLOWED_PRAGMAS,
and ``load_extension``. The decision is SQLite's, made while it prepares the statement, so
comments, casing or quoting cannot get around it.
"""

import sqlite3

ALLOWED_PRAGMAS = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_info",
        "index_xinfo",
        "index_list",
        "foreign_key_list",
        "foreign_key_check",
        "defer_foreign_keys",
        "data_version",  # read only; FTS5 runs it internally
        "quick_check",
        "integrity_check",
    }
)

_TRANSACTION = (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT)
_ATTACH = (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH)
# Actions whose first argument names a table, view, index or trigger.
_NAME_FIRST = {
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_INSERT,
    sqlite3.SQLITE_UPDATE,
    sqlite3.SQLITE_DELETE,
    sqlite3.SQLITE_CREATE_TABLE,
    sqlite3.SQLITE_CREATE_TEMP_TABLE,
    sqlite3.SQLITE_DROP_TABLE,
    sqlite3.SQLITE_DROP_TEMP_TABLE,
    sqlite3.SQLITE_CREATE_VIEW,
    sqlite3.SQLITE_DROP_VIEW,
    sqlite3.SQLITE_CREATE_VTABLE,
    sqlite3.SQLITE_DROP_VTABLE,
}
# Actions whose second argument names the table (the first is an index or trigger name).
_NAME_SECOND = {
    sqlite3.SQLITE_CREATE_INDEX,
    sqlite3.SQLITE_CREATE_TEMP_INDEX,
    sqlite3.SQLITE_DROP_INDEX,
    sqlite3.SQLITE_DROP_TEMP_INDEX,
    sqlite3.SQLITE_CREATE_TRIGGER,
    sqlite3.SQLITE_CREATE_TEMP_TRIGGER,
    sqlite3.SQLITE_DROP_TRIGGER,
    sqlite3.SQLITE_DROP_TEMP_TRIGGER,
    sqlite3.SQLITE_ALTER_TABLE,
    sqlite3.SQLITE_ANALYZE,
}
_SCHEMA_WRITES = (_NAME_FIRST | _NAME_SECOND) - {
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_INSERT,
    sqlite3.SQLITE_UPDATE,
    sqlite3.SQLITE_DELETE,
}


def _internal_name(name):
    return isinstance(name, str) and name.lower().startswith("_do_")


class Authorizer:
    """The callback installed on a shard's connection; remembers why it refused."""

    def __init__(self):
        self.internal_depth = 0  # > 0 while the runtime runs its own statements
        self.refusal = None
        self.wrote_schema = False

    def __call__(self, action, arg1, arg2, db_name, trigger):
        if self.internal_depth:
            return sqlite3.SQLITE_OK
        reason = self._refuse(action, arg1, arg2)
        if reason is not None:
            self.refusal = reason
            return sqlite3.SQLITE_DENY
        if action in _SCHEMA_WRITES:
            self.wrote_schema = True
        return sqlite3.SQLITE_OK

    def _refuse(self, action, arg1, arg2):
        if action in _TRANSACTION:
            return (
                "transaction statements (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE) are not "
                "allowed: every event is already a transaction; use "
                "ctx.storage.transaction_sync() or ctx.storage.atomic() to nest one"
            )
        if action in _ATTACH:
            return "ATTACH and DETACH are not allowed: an object sees only its own database"
        if action == sqlite3.SQLITE_PRAGMA:
            pragma = (arg1 or "").lower()
            if pragma not in ALLOWED_PRAGMAS:
                return f"PRAGMA {pragma} is not allowed; allowed pragmas: " + ", ".join(
                    sorted(ALLOWED_PRAGMAS)
                )
            if _internal_name(arg2):
                return f"internal table {arg2} is not accessible"
            return None
        if action in _NAME_FIRST and _internal_name(arg1):
            return f"internal table {arg1} is not accessible"
        if action in _NAME_SECOND and _internal_name(arg2):
            return f"internal table {arg2} is not accessible"
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() == "load_extension":
            return "load_extension() is not allowed"
        return None
