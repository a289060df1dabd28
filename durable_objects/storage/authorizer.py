"""SQLite's authorizer callback: what user SQL may do in a shard.

Refused: transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE), ATTACH and
DETACH, any action on an internal ``_do_`` name (tables, views, indexes and triggers, temp
ones included, in every argument position that names one), PRAGMAs outside
ALLOWED_PRAGMAS, functions outside ALLOWED_FUNCTIONS, and the virtual tables that look
below the tables (``dbstat``, ``sqlite_stmt``, ``sqlite_dbpage``). The decision is
SQLite's, made while it prepares the statement, so comments, casing or quoting cannot get
around it. ``ALTER TABLE ... RENAME TO`` does not pass the new name to the authorizer;
``SqlStorage`` checks the schema after it instead (see ``sql.py``).
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


def _names(text):
    return frozenset(text.split())


# The functions user SQL may call, from SQLite's documentation; anything else (the
# pointer-passing fts3_tokenizer() and fts5(), load_extension(), sqlite_log(), the
# FTS3/4 and R*Tree helpers, functions of later builds) is refused. A name a build lacks
# is harmless here: SQLite reports "no such function" before it asks. Issue 13.
FUNCTION_GROUPS = {
    # https://sqlite.org/lang_corefunc.html
    "core": _names(
        "abs changes char coalesce concat concat_ws format glob hex if ifnull iif instr "
        "last_insert_rowid length like likelihood likely lower ltrim max min nullif "
        "octet_length printf quote random randomblob replace round rtrim sign soundex "
        "sqlite_compileoption_get sqlite_compileoption_used sqlite_offset sqlite_source_id "
        "sqlite_version substr substring total_changes trim typeof unhex unicode unistr "
        "unistr_quote unlikely upper zeroblob"
    ),
    # https://sqlite.org/lang_aggfunc.html
    "aggregate": _names("avg count group_concat max min string_agg sum total"),
    # https://sqlite.org/windowfunctions.html#builtins
    "window": _names(
        "row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value "
        "last_value nth_value"
    ),
    # https://sqlite.org/lang_datefunc.html (CURRENT_TIMESTAMP and friends are functions too)
    "date and time": _names(
        "date time datetime julianday unixepoch strftime timediff current_date current_time "
        "current_timestamp"
    ),
    # https://sqlite.org/lang_mathfunc.html
    "math": _names(
        "acos acosh asin asinh atan atan2 atanh ceil ceiling cos cosh degrees exp floor ln "
        "log log10 log2 mod pi pow power radians sin sinh sqrt tan tanh trunc"
    ),
    # https://sqlite.org/json1.html (-> and ->> are functions to the authorizer)
    "JSON": _names(
        "json jsonb json_array jsonb_array json_array_length json_error_position "
        "json_extract jsonb_extract -> ->> json_insert jsonb_insert json_object "
        "jsonb_object json_patch jsonb_patch json_pretty json_remove jsonb_remove "
        "json_replace jsonb_replace json_set jsonb_set json_type json_valid json_quote "
        "json_group_array jsonb_group_array json_group_object jsonb_group_object"
    ),
    # https://sqlite.org/fts5.html#auxiliary_functions, and MATCH, which is a function too
    "FTS5": _names("match bm25 highlight snippet fts5_locale fts5_get_locale"),
}
# SQLite's own, run by ALTER TABLE on sqlite_schema; SQL cannot call them (they are
# SQLITE_FUNC_INTERNAL: "no such function"), but the authorizer sees them.
ALTER_TABLE_FUNCTIONS = _names(
    "sqlite_rename_column sqlite_rename_table sqlite_rename_test sqlite_drop_column "
    "sqlite_rename_quotefix"
)
ALLOWED_FUNCTIONS = frozenset().union(*FUNCTION_GROUPS.values(), ALTER_TABLE_FUNCTIONS)

# Eponymous virtual tables that show pages, statements or sizes of every table, the
# internal ones included.
BELOW_TABLES = frozenset({"dbstat", "sqlite_stmt", "sqlite_dbpage"})

_TRANSACTION = (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT)
_ATTACH = (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH)
# Actions whose second argument is a column name, not a table's.
_COLUMN_SECOND = (sqlite3.SQLITE_READ, sqlite3.SQLITE_UPDATE)
_SCHEMA_WRITES = frozenset(
    getattr(sqlite3, f"SQLITE_{name}")
    for name in _names(
        "CREATE_INDEX CREATE_TABLE CREATE_TEMP_INDEX CREATE_TEMP_TABLE CREATE_TEMP_TRIGGER "
        "CREATE_TEMP_VIEW CREATE_TRIGGER CREATE_VIEW DROP_INDEX DROP_TABLE DROP_TEMP_INDEX "
        "DROP_TEMP_TABLE DROP_TEMP_TRIGGER DROP_TEMP_VIEW DROP_TRIGGER DROP_VIEW ALTER_TABLE "
        "REINDEX ANALYZE CREATE_VTABLE DROP_VTABLE"
    )
)
_INTERNAL_PREFIXES = ("_do_", "sqlite_autoindex__do_")


def is_internal_name(name):
    """True for a name of the runtime's: ``_do_...`` in any case, or one of its indexes."""
    # str.lower() folds more than SQLite's ASCII-only folding: it may refuse a name
    # SQLite would not take for internal, never the reverse.
    return isinstance(name, str) and name.lower().startswith(_INTERNAL_PREFIXES)


def internal_name_in(action, arg1, arg2, source):
    """The internal name an authorizer call names, or None.

    Every argument that can name a table, view, index or trigger is checked: both
    arguments of most actions (an index or trigger and its table; a virtual table and
    its module), the table of a read or update (the second argument is a column), the
    argument of a PRAGMA, and the trigger or view the access comes from.
    """
    if action == sqlite3.SQLITE_PRAGMA:
        names = (arg2, source)
    elif action in _COLUMN_SECOND:
        names = (arg1, source)
    elif action == sqlite3.SQLITE_FUNCTION:
        names = (source,)
    else:
        names = (arg1, arg2, source)
    for name in names:
        if is_internal_name(name):
            return name
    return None


def internal_refusal(action, name):
    """Why an action on the internal name is refused."""
    if action == sqlite3.SQLITE_ANALYZE:
        return (
            f"ANALYZE reaches internal table {name}; analyze your own tables by name "
            "(ANALYZE my_table)"
        )
    if action == sqlite3.SQLITE_REINDEX:
        return (
            f"REINDEX reaches {name}, an index of an internal table; reindex your own "
            "tables or indexes by name (REINDEX my_table)"
        )
    return f"internal table {name} is not accessible (names starting with _do_ are reserved)"


def function_refusal(name):
    """Why a call of the function is refused, or None if it is allowed."""
    lowered = (name or "").lower()
    if lowered in ALLOWED_FUNCTIONS:
        return None
    *groups, last = FUNCTION_GROUPS
    return (
        f"function {lowered}() is not allowed; SQL may call SQLite's {', '.join(groups)} "
        f"and {last} functions"
    )


def below_tables_refusal(action, arg1, arg2):
    """Why a read or creation of a virtual table of BELOW_TABLES is refused, or None."""
    if action == sqlite3.SQLITE_READ:
        table = (arg1 or "").lower()
    elif action in (sqlite3.SQLITE_CREATE_VTABLE, sqlite3.SQLITE_DROP_VTABLE):
        table = (arg2 or "").lower()
    else:
        return None
    if table in BELOW_TABLES:
        return f"the {table} virtual table is not available: it shows the internal tables too"
    return None


class Authorizer:
    """The callback installed on a shard's connection; remembers why it refused."""

    def __init__(self):
        self.internal_depth = 0  # > 0 while the runtime runs its own statements
        self.refusal = None
        self.wrote_schema = False
        # Set by SqlStorage around a statement it checks after running (ALTER TABLE).
        self.alter_checked = False

    def __call__(self, action, arg1, arg2, db_name, source):
        if self.internal_depth:
            return sqlite3.SQLITE_OK
        reason = self._refuse(action, arg1, arg2, source)
        if reason is not None:
            self.refusal = reason
            return sqlite3.SQLITE_DENY
        if action in _SCHEMA_WRITES:
            self.wrote_schema = True
        return sqlite3.SQLITE_OK

    def _refuse(self, action, arg1, arg2, source):
        if action in _TRANSACTION:
            return (
                "transaction statements (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE) are not "
                "allowed: every event is already a transaction; use "
                "ctx.storage.transaction_sync() or ctx.storage.atomic() to nest one"
            )
        if action in _ATTACH:
            return "ATTACH and DETACH are not allowed: an object sees only its own database"
        name = internal_name_in(action, arg1, arg2, source)
        if name is not None:
            return internal_refusal(action, name)
        if action == sqlite3.SQLITE_PRAGMA:
            pragma = (arg1 or "").lower()
            if pragma not in ALLOWED_PRAGMAS:
                return f"PRAGMA {pragma} is not allowed; allowed pragmas: " + ", ".join(
                    sorted(ALLOWED_PRAGMAS)
                )
            return None
        if action == sqlite3.SQLITE_FUNCTION:
            return function_refusal(arg2)
        if action == sqlite3.SQLITE_ALTER_TABLE and not self.alter_checked:
            # The new name of a RENAME is not passed here; only a statement SqlStorage
            # checks afterwards may alter (see sql.py).
            return "ALTER TABLE is only allowed as a statement of its own in sql.exec()"
        return below_tables_refusal(action, arg1, arg2)
