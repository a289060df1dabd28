"""Hostile SQL (issue 13, SQL): the console's bounds, the function list, internal names.

Every test runs real SQLite on real shards, through the object's own storage API or the
admin's read-only console.
"""

import sqlite3

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from durable_objects import ForbiddenQuery, ObjectReset, serialization
from durable_objects.admin import console
from durable_objects.runtime.lifecycle import get_host
from durable_objects.storage.files import open_read_only
from durable_objects.storage.shard import shard_path
from durable_objects.testing import run_in_durable_object
from tests.support.objects import Counter, Plain

SECRET = "s3cr3t-internal-value"
INTERNAL_TABLES = frozenset(
    {"_do_meta", "_do_kv", "_do_sockets", "_do_alarm", "_do_schedules", "_do_queue"}
)
INTERNAL_NAMES = INTERNAL_TABLES | {"_do_schedules_due"}  # and the index of one


def in_object(stub, fn):
    return async_to_sync(run_in_durable_object)(stub, fn)


def exec_sql(stub, query, *bindings):
    return in_object(stub, lambda obj, ctx: ctx.storage.sql.exec(query, *bindings).raw())


def path_of(storage_root, stub):
    return shard_path(storage_root, stub._namespace.model._meta.label, str(stub.id))


def with_storage(storage_root, name="hardened"):
    """An object with a user table, an FTS5 table, a secret entry and an alarm-free shard."""
    stub = Plain.objects.get_by_name(name)

    def fill(obj, ctx):
        ctx.storage.put("secret", SECRET)
        ctx.storage.sql.exec("CREATE TABLE t(key TEXT, value BLOB, a)")
        ctx.storage.sql.exec("INSERT INTO t VALUES ('k', x'00', 1)")
        ctx.storage.sql.exec("CREATE VIRTUAL TABLE docs USING fts5(body)")
        ctx.storage.sql.exec("INSERT INTO docs(body) VALUES ('durable objects for django')")

    in_object(stub, fill)
    return stub, path_of(storage_root, stub)


def internal_state(path):
    """Everything the internal tables hold, and the schema rows of internal names."""
    conn = open_read_only(path)
    try:
        state = {
            table: conn.execute(f"SELECT * FROM main.{table} ORDER BY 1").fetchall()
            for table in sorted(INTERNAL_TABLES)
        }
        state["schema"] = conn.execute(
            "SELECT type, name, tbl_name, sql FROM main.sqlite_schema "
            "WHERE lower(name) LIKE '%\\_do\\_%' ESCAPE '\\' OR lower(tbl_name) LIKE "
            "'%\\_do\\_%' ESCAPE '\\' ORDER BY name"
        ).fetchall()
        return state
    finally:
        conn.close()


def names_in_connection(stub):
    """Names of the shard connection's main and temp schemas that start with _do_."""

    def read(obj, ctx):
        shard = ctx.storage._shard()
        rows = shard.execute(
            "SELECT 'main', name FROM main.sqlite_schema UNION ALL "
            "SELECT 'temp', name FROM temp.sqlite_schema"
        ).fetchall()
        return sorted((s, n) for s, n in rows if n.lower().startswith("_do_"))

    return in_object(stub, read)


# -- 1. the console: bytes, time, permission ---------------------------------------------


def test_console_cuts_a_result_of_large_blobs_at_its_byte_budget(storage_root, monkeypatch):
    monkeypatch.setattr(console, "MAX_BYTES", 1024 * 1024, raising=False)
    _stub, path = with_storage(storage_root, "blobs")
    sql = (
        "WITH RECURSIVE r(n, b) AS (SELECT 1, randomblob(100000) UNION ALL "
        "SELECT n + 1, randomblob(100000) FROM r WHERE n < 2000) SELECT n, b FROM r"
    )
    result = console.run_read_only(path, sql)
    assert result["truncated"]
    assert "at most 1 MiB of values" in result["notice"]
    held = sum(len(row[1]) + 8 for row in result["rows"])
    # The budget bounds what was held: at most the budget plus the row that passed it.
    assert 1024 * 1024 < held <= 1024 * 1024 + 100_008
    assert len(result["rows"]) == 11


def test_console_refuses_a_value_over_its_length_limit(storage_root):
    _stub, path = with_storage(storage_root, "long")
    for sql in (
        "SELECT randomblob(2 * 1024 * 1024)",
        "WITH RECURSIVE r(n, b) AS (SELECT 1, x'00' UNION ALL SELECT n + 1, b || b FROM r "
        "WHERE n < 40) SELECT n, length(b) FROM r",
    ):
        with pytest.raises(ValueError, match="larger than the console's limit of 1 MiB"):
            console.run_read_only(path, sql)


def test_console_reads_a_wide_table_a_few_columns_at_a_time(storage_root):
    stub, path = with_storage(storage_root, "wide")
    columns = ", ".join(f"c{i}" for i in range(100))
    exec_sql(stub, f"CREATE TABLE wide({columns})")
    exec_sql(stub, "INSERT INTO wide(c0, c99) VALUES (1, 2)")
    assert console.run_read_only(path, "SELECT c0, c99 FROM wide")["rows"] == [[1, 2]]
    with pytest.raises(ValueError, match="at most 64 columns"):
        console.run_read_only(path, "SELECT * FROM wide")


def test_console_interrupts_a_slow_query_of_few_steps(storage_root):
    _stub, path = with_storage(storage_root, "slow")
    # About 30 SQLite steps a row, each instr() a few hundred milliseconds of memcmp:
    # a step-counting progress handler (every 10,000 steps) never runs at all.
    sql = (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 40) "
        "SELECT sum(instr(printf('%.*c', 200000 + n, 'a'), printf('%.*c', 100000, 'a') || 'b')) "
        "FROM r"
    )
    with pytest.raises(TimeoutError, match="ran past 0.3 s and was stopped"):
        console.run_read_only(path, sql, time_limit=0.3)
    # The connection was interrupted, not the host: the next statement runs.
    assert console.run_read_only(path, "SELECT count(*) FROM t")["rows"] == [[1]]


def test_console_refuses_unlisted_functions_and_runs_listed_ones(storage_root):
    _stub, path = with_storage(storage_root, "functions")
    for sql in (
        "SELECT fts3_tokenizer('simple')",
        "SELECT fts5(NULL)",
        "SELECT sqlite_log(1, 'x')",
    ):
        with pytest.raises(ForbiddenQuery, match=r"function \w+\(\) is not allowed"):
            console.run_read_only(path, sql)
    rows = console.run_read_only(
        path,
        "SELECT upper('a'), json_extract('{\"a\": 2}', '$.a'), sqrt(16), date(0, 'unixepoch'), "
        "highlight(docs, 0, '[', ']') FROM docs WHERE docs MATCH 'django'",
    )["rows"]
    assert rows == [["A", 2, 4.0, "1970-01-01", "durable objects for [django]"]]
    pragma = console.run_read_only(path, "SELECT name FROM pragma_table_info('t')")["rows"]
    assert pragma == [["key"], ["value"], ["a"]]
    for sql in ("SELECT * FROM pragma_table_info('_do_kv')", "SELECT * FROM dbstat"):
        with pytest.raises(ForbiddenQuery):
            console.run_read_only(path, sql)


@pytest.fixture
def staff(django_user_model):
    def make(*codenames, username="staff"):
        user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
        for codename in codenames:
            user.user_permissions.add(Permission.objects.get(codename=codename))
        client = Client()
        client.force_login(user)
        return client

    return make


def catalogued(stub):
    from durable_objects.models import ObjectRecord

    get_host().catalog.flush_sync()
    return ObjectRecord.objects.get(object_id=str(stub.id))


def admin_url(view, record):
    return reverse(f"admin:durable_objects_objectrecord_{view}", args=[record.pk])


@pytest.mark.django_db(transaction=True)
def test_the_console_needs_a_permission_of_its_own(staff, storage_root):
    stub, _path = with_storage(storage_root, "permission")
    record = catalogued(stub)
    viewer = staff("view_objectrecord")
    detail = viewer.get(admin_url("change", record))
    assert detail.status_code == 200 and "SQL console" not in detail.text
    assert viewer.get(admin_url("console", record)).status_code == 403
    assert viewer.post(admin_url("console", record), {"sql": "SELECT 1"}).status_code == 403

    operator = staff("view_objectrecord", "use_sql_console", username="operator")
    assert "read-only SQL console" in operator.get(admin_url("change", record)).text
    response = operator.post(admin_url("console", record), {"sql": "SELECT a FROM t"})
    assert response.status_code == 200 and response.context["result"]["rows"] == [[1]]
    # The permission alone, without view, opens nothing.
    alone = staff("use_sql_console", username="alone")
    assert alone.post(admin_url("console", record), {"sql": "SELECT 1"}).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_the_console_page_says_why_a_result_was_cut(admin_client, storage_root, monkeypatch):
    monkeypatch.setattr(console, "MAX_BYTES", 200_000, raising=False)
    stub, _path = with_storage(storage_root, "cut")
    record = catalogued(stub)
    sql = (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 100) "
        "SELECT n, randomblob(50000) FROM r"
    )
    response = admin_client.post(admin_url("console", record), {"sql": sql})
    assert response.status_code == 200
    assert len(response.context["result"]["rows"]) == 4
    assert "The result was cut after 4 rows" in response.text


# -- 2. functions from a list ------------------------------------------------------------

UNLISTED = [
    "SELECT fts3_tokenizer('simple')",
    "SELECT FTS3_TOKENIZER('porter')",
    "SELECT fts5(NULL)",
    "SELECT load_extension('x')",
    "SELECT sqlite_log(1, 'written to the error log')",
    "SELECT fts5_source_id()",
    "CREATE TABLE leak AS SELECT fts3_tokenizer('simple') AS p",
    "SELECT p FROM (SELECT fts3_tokenizer('simple') AS p)",
    "WITH x(p) AS (SELECT fts3_tokenizer('simple')) SELECT p FROM x",
]


@pytest.mark.parametrize("query", UNLISTED)
def test_unlisted_functions_are_refused_and_the_process_stays_up(storage_root, query):
    stub, path = with_storage(storage_root, "unlisted")
    before = internal_state(path)
    with pytest.raises(ForbiddenQuery, match=r"function \w+\(\) is not allowed"):
        exec_sql(stub, query)
    assert exec_sql(stub, "SELECT name FROM sqlite_schema WHERE name LIKE 'leak%'") == []
    assert internal_state(path) == before
    assert async_to_sync(stub.add)(2, 3) == 5


def test_listed_functions_work(storage_root):
    stub, _path = with_storage(storage_root, "listed")
    row = exec_sql(
        stub,
        "SELECT abs(-2), coalesce(NULL, 'c'), printf('%03d', 7), hex('A'), length('four'), "
        "json_extract('{\"a\": [1, 2]}', '$.a[1]'), '{\"b\": 3}' ->> 'b', "
        "json_array_length('[1, 2, 3]'), round(pi(), 2), pow(2, 10), "
        "date('2024-02-28', '+1 day'), unixepoch('1970-01-02'), typeof(CURRENT_TIMESTAMP)",
    )
    assert row == [(2, "c", "007", "41", 4, 2, 3, 3, 3.14, 1024.0, "2024-02-29", 86400, "text")]
    window = exec_sql(
        stub,
        "SELECT n, sum(n) OVER (ORDER BY n), row_number() OVER (ORDER BY n DESC) "
        "FROM (SELECT 1 AS n UNION ALL SELECT 2) ORDER BY n",
    )
    assert window == [(1, 1, 2), (2, 3, 1)]
    assert exec_sql(stub, "SELECT group_concat(a), count(*), total(a) FROM t") == [("1", 1, 1.0)]
    fts = exec_sql(
        stub,
        "SELECT snippet(docs, 0, '<', '>', '...', 4), bm25(docs) < 0 FROM docs "
        "WHERE docs MATCH 'objects'",
    )
    assert fts == [("durable <objects> for django", 1)]
    # ALTER TABLE runs SQLite's own sqlite_rename_*() functions; they are allowed there.
    exec_sql(stub, "ALTER TABLE t RENAME COLUMN a TO b")
    exec_sql(stub, "ALTER TABLE t ADD COLUMN c DEFAULT 'x' CHECK (length(c) < 10)")
    exec_sql(stub, "ALTER TABLE t DROP COLUMN c")
    exec_sql(stub, "ALTER TABLE t RENAME TO renamed")
    assert exec_sql(stub, "SELECT b FROM renamed") == [(1,)]


# -- 3. internal names cannot be shadowed or taken ---------------------------------------

TAKING = [
    "CREATE TEMP VIEW _do_kv AS SELECT 'secret' AS key, x'a466616b65' AS value",
    "CREATE TEMPORARY VIEW _DO_META AS SELECT 'epoch' AS key, 0 AS value",
    "CREATE TEMP TABLE _do_kv(key TEXT PRIMARY KEY, value BLOB)",
    'CREATE TEMP TABLE "_Do_Alarm"(id INTEGER PRIMARY KEY)',
    "CREATE TEMP TABLE temp_copy AS SELECT * FROM main._do_kv",
    "CREATE TEMP TRIGGER _do_trigger AFTER INSERT ON t BEGIN SELECT 1; END",
    "CREATE TEMP TRIGGER spy AFTER INSERT ON main._do_kv BEGIN SELECT 1; END",
    "CREATE INDEX _do_index ON t(a)",
    "CREATE INDEX [_do_kv_value] ON t(value)",
    "CREATE TEMP TABLE scratch(x); CREATE INDEX temp._do_scratch ON scratch(x)",
    "CREATE VIEW _do_view AS SELECT 1",
    "CREATE VIRTUAL TABLE _do_search USING fts5(body)",
    "CREATE VIRTUAL TABLE _do USING fts5(body)",  # its shadow tables are _do_data, ...
    "ANALYZE _do_kv",
    "ANALYZE main._DO_META",
    "ANALYZE",
    "REINDEX _do_kv",
    "REINDEX main.sqlite_autoindex__do_kv_1",
    "REINDEX",
    "ALTER TABLE t RENAME TO _do_taken",
    'ALTER TABLE t RENAME TO "_DO_Taken"',
    "ALTER TABLE t RENAME TO [_do_taken]",
    "ALTER TABLE main.t RENAME TO `_do_taken`",
    "ALTER /* a comment */ TABLE t RENAME TO '_do_taken'",
    "ALTER TABLE docs RENAME TO _do",  # FTS5 renames its shadow tables to _do_data, ...
    "CREATE TEMP TABLE tt(x); ALTER TABLE temp.tt RENAME TO _do_kv",
    "DROP VIEW IF EXISTS _do_kv",
    "PRAGMA index_info(sqlite_autoindex__do_kv_1)",
    "SELECT * FROM dbstat",
    "SELECT sql FROM sqlite_stmt",
]


@pytest.mark.parametrize("query", TAKING)
def test_internal_names_cannot_be_taken_or_shadowed(storage_root, query):
    stub, path = with_storage(storage_root, "taken")
    before = internal_state(path)
    with pytest.raises(ForbiddenQuery, match="Query refused"):
        exec_sql(stub, query)
    assert names_in_connection(stub) == sorted(("main", name) for name in INTERNAL_NAMES)
    assert internal_state(path) == before
    assert exec_sql(stub, "SELECT a FROM t") == [(1,)]  # the user table kept its name
    exec_sql(stub, "INSERT INTO t VALUES ('k2', x'01', 2)")  # and no trigger of it fires
    assert in_object(stub, lambda obj, ctx: ctx.storage.get("secret")) == SECRET


def test_a_trigger_cannot_write_an_internal_table_when_it_fires(storage_root):
    stub, path = with_storage(storage_root, "trigger")
    before = internal_state(path)
    # SQLite authorizes a trigger's body when it fires, with the trigger's name.
    exec_sql(stub, "CREATE TEMP TRIGGER writer AFTER INSERT ON t BEGIN DELETE FROM _do_kv; END")
    with pytest.raises(ForbiddenQuery, match="internal table _do_kv is not accessible"):
        exec_sql(stub, "INSERT INTO t VALUES ('k2', x'01', 2)")
    assert internal_state(path) == before
    assert exec_sql(stub, "SELECT count(*) FROM t") == [(1,)]


def test_a_refused_rename_is_undone_and_the_event_goes_on(storage_root):
    stub, _path = with_storage(storage_root, "undone")

    def rename_then_write(obj, ctx):
        ctx.storage.put("before", 1)
        with pytest.raises(ForbiddenQuery, match="names starting with _do_ are reserved"):
            ctx.storage.sql.exec("ALTER TABLE t RENAME TO _do_mine")
        ctx.storage.put("after", 2)
        return ctx.storage.sql.exec("SELECT name FROM sqlite_schema WHERE name = 't'").raw()

    assert in_object(stub, rename_then_write) == [("t",)]
    listed = in_object(stub, lambda obj, ctx: ctx.storage.list())
    assert listed == {"after": 2, "before": 1, "secret": SECRET}


def fake_kv_view(obj, ctx):
    # As if a temp view had got past the authorizer: made through the shard's own
    # connection, which the runtime's internal statements use too.
    fake = serialization.dumps("fake").hex()
    ctx.storage._shard().execute(
        f"CREATE TEMP VIEW _do_kv AS SELECT 'secret' AS key, x'{fake}' AS value "
        f"UNION ALL SELECT 'planted', x'{fake}'"
    )


def test_storage_reads_the_real_table_even_if_a_temp_view_shadows_it(storage_root):
    stub, _path = with_storage(storage_root, "shadowed")
    in_object(stub, lambda obj, ctx: ctx.storage.get("secret"))  # statements are cached
    in_object(stub, fake_kv_view)
    assert names_in_connection(stub)[-1] == ("temp", "_do_kv")  # the view is there

    def read(obj, ctx):
        storage = ctx.storage
        return (
            storage.get("secret"),
            storage.get("planted"),
            storage.get_many(["secret", "planted"]),
            storage.list(),
        )

    secret, planted, many, listed = in_object(stub, read)
    assert secret == SECRET and planted is None
    assert many == {"secret": SECRET} and listed == {"secret": SECRET}
    assert in_object(stub, lambda obj, ctx: ctx.storage.delete("planted")) is False
    in_object(stub, lambda obj, ctx: ctx.storage.delete_all())
    assert in_object(stub, lambda obj, ctx: ctx.storage.list()) == {}


def test_the_fencing_epoch_cannot_be_spoofed_by_a_temp_view(storage_root):
    stub = Counter.objects.get_by_name("spoofed")
    assert async_to_sync(stub.increment)() == 1

    def spoof(obj, ctx):
        shard = ctx.storage._shard()
        epoch = shard.meta("epoch")
        shard.execute(f"CREATE TEMP VIEW _do_meta AS SELECT 'epoch' AS key, {int(epoch)} AS value")

    in_object(stub, spoof)
    # A newer activation elsewhere bumps the epoch; this one must no longer commit.
    conn = sqlite3.connect(path_of(storage_root, stub))
    conn.execute("UPDATE _do_meta SET value = value + 1 WHERE key = 'epoch'")
    conn.commit()
    conn.close()
    with pytest.raises(ObjectReset, match="Commit failed"):
        async_to_sync(stub.increment)()
    assert async_to_sync(stub.value)() == 1


# -- 4. generated statements never reach an internal table -------------------------------


def spellings(name):
    """An internal name in one of the spellings and quotings SQLite accepts."""
    cased = st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda upper: "".join(c.upper() if u else c for c, u in zip(name, upper, strict=True))
    )
    quoted = st.tuples(cased, st.sampled_from(["{}", '"{}"', "[{}]", "`{}`", "'{}'"])).map(
        lambda pair: pair[1].format(pair[0])
    )
    return st.tuples(st.sampled_from(["", "main.", "temp.", '"main".']), quoted).map(
        lambda pair: pair[0] + pair[1]
    )


INTERNAL = st.sampled_from([*sorted(INTERNAL_TABLES), "_do_new", "_do_data"]).flatmap(spellings)
USER = st.sampled_from(["t", "u", "docs", "v", "main.t", "temp.tt"])
NAME = st.one_of(INTERNAL, USER)
FUNCTION = st.sampled_from(
    [
        "upper(key)",
        "length(value)",
        "json_quote(key)",
        "hex(value)",
        "fts3_tokenizer('simple')",
        "fts5(NULL)",
        "load_extension('x')",
        "sqlite_log(1, key)",
        "count(*)",
        "group_concat(value)",
    ]
)
TEMP = st.sampled_from(["", "TEMP ", "TEMPORARY "])
STATEMENT = st.one_of(
    st.builds("SELECT * FROM {}".format, NAME),
    st.builds("SELECT {} FROM {}".format, FUNCTION, NAME),
    st.builds("SELECT key, value FROM {} WHERE key = 'secret'".format, NAME),
    st.builds("INSERT INTO {}(key, value) VALUES ('secret', x'a0')".format, NAME),
    st.builds("INSERT INTO {} SELECT * FROM {}".format, NAME, NAME),
    st.builds("UPDATE {} SET value = x'a0'".format, NAME),
    st.builds("DELETE FROM {}".format, NAME),
    st.builds("DROP TABLE {}".format, NAME),
    st.builds("DROP VIEW {}".format, NAME),
    st.builds("CREATE {}VIEW {} AS SELECT 'secret' AS key, x'a0' AS value".format, TEMP, NAME),
    st.builds("CREATE {}VIEW {} AS SELECT * FROM {}".format, TEMP, NAME, NAME),
    st.builds("CREATE {}TABLE {}(key, value)".format, TEMP, NAME),
    st.builds("CREATE {}TABLE {} AS SELECT * FROM {}".format, TEMP, NAME, NAME),
    st.builds("CREATE INDEX {} ON {}(key)".format, NAME, NAME),
    st.builds(
        "CREATE {}TRIGGER {} AFTER INSERT ON {} BEGIN DELETE FROM {}; END".format,
        TEMP,
        NAME,
        NAME,
        NAME,
    ),
    st.builds("ALTER TABLE {} RENAME TO {}".format, NAME, NAME),
    st.builds("ALTER TABLE {} ADD COLUMN extra".format, NAME),
    st.builds("ANALYZE {}".format, NAME),
    st.builds("REINDEX {}".format, NAME),
    st.builds("PRAGMA table_info({})".format, NAME),
    st.builds("SELECT * FROM pragma_table_info({!r})".format, NAME),
    st.builds("WITH x AS (SELECT * FROM {}) SELECT * FROM x".format, NAME),
    st.builds("CREATE VIRTUAL TABLE {} USING fts5(body)".format, NAME),
    st.just("INSERT INTO t(key, value) VALUES ('fires', x'00')"),
    st.just("SELECT * FROM v"),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(statements=st.lists(STATEMENT, min_size=1, max_size=3))
def test_generated_statements_never_read_or_write_an_internal_table(storage_root, statements):
    stub = Plain.objects.get_by_name("generated")
    path = path_of(storage_root, stub)
    if not path.exists():
        with_storage(storage_root, "generated")
    before = internal_state(path)

    def run(obj, ctx):
        outputs = []
        for statement in statements:
            # Refused, or an ordinary SQL error: the event goes on, and commits.
            try:
                outputs.append(repr(ctx.storage.sql.exec(statement).raw()))
            except ForbiddenQuery:
                outcomes.append("refused")
            except (sqlite3.Error, ValueError):
                outcomes.append("SQL error")
            else:
                outcomes.append("ran")
        return outputs

    outcomes = []
    outputs = in_object(stub, run)
    for outcome in outcomes:
        event(outcome)  # shown by --hypothesis-show-statistics
    leaked = (SECRET, SECRET.encode().hex())
    assert not any(word in output.lower() for output in outputs for word in leaked), outputs
    assert internal_state(path) == before, statements
    assert names_in_connection(stub) == sorted(("main", name) for name in INTERNAL_NAMES)
    assert in_object(stub, lambda obj, ctx: ctx.storage.list()) == {"secret": SECRET}
