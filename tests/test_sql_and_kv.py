"""The storage APIs: key-value, SQL, transactions, limits and the SQL authorizer."""

import contextlib
import sqlite3

import pytest

from durable_objects import ForbiddenQuery
from durable_objects.storage.schema import INTERNAL
from durable_objects.storage.shard import shard_path
from durable_objects.testing import evict, run_in_durable_object
from tests.support.objects import Ledger, Plain


def inside(stub, fn):
    return run_in_durable_object(stub, lambda obj, ctx: fn(ctx.storage))


@pytest.fixture
def stub():
    return Plain.objects.get_by_name("storage")


# -- key-value ---------------------------------------------------------------------------


async def test_values_of_every_supported_type_round_trip(stub):
    values = {
        "none": None,
        "bool": True,
        "int": -(2**63),
        "float": 1.5,
        "str": "héllo",
        "bytes": b"\x00\xff",
        "list": [1, [2, "three"]],
        "dict": {"a": {"b": [None]}, 1: "int key"},
        "tuple": (1, 2),
    }
    await inside(stub, lambda s: s.put_many(values))
    got = await inside(stub, lambda s: s.get_many(list(values)))
    assert got == {**values, "tuple": [1, 2]}
    assert await inside(stub, lambda s: s.get("bytes")) == b"\x00\xff"


async def test_get_returns_default_and_get_many_only_found_keys_in_asked_order(stub):
    await inside(stub, lambda s: s.put_many({"a": 1, "b": 2, "c": 3}))
    assert await inside(stub, lambda s: s.get("missing", "dflt")) == "dflt"
    got = await inside(stub, lambda s: s.get_many(["c", "missing", "a"]))
    assert list(got.items()) == [("c", 3), ("a", 1)]


async def test_delete_reports_whether_keys_existed(stub):
    await inside(stub, lambda s: s.put_many({"a": 1, "b": 2, "c": 3}))
    assert await inside(stub, lambda s: s.delete("a")) is True
    assert await inside(stub, lambda s: s.delete("a")) is False
    assert await inside(stub, lambda s: s.delete_many(["b", "c", "zz"])) == 2
    assert await inside(stub, lambda s: s.list()) == {}


async def test_list_orders_and_filters_keys(stub):
    keys = ["a", "b", "ba", "bb", "c", "é", "日本"]
    await inside(stub, lambda s: s.put_many({k: k.upper() for k in keys}))
    assert list(await inside(stub, lambda s: s.list())) == keys
    assert list(await inside(stub, lambda s: s.list(start="b", end="c"))) == ["b", "ba", "bb"]
    assert list(await inside(stub, lambda s: s.list(start_after="b", limit=2))) == ["ba", "bb"]
    assert list(await inside(stub, lambda s: s.list(prefix="b"))) == ["b", "ba", "bb"]
    assert list(await inside(stub, lambda s: s.list(prefix="日"))) == ["日本"]
    assert list(await inside(stub, lambda s: s.list(reverse=True, limit=3))) == ["日本", "é", "c"]
    assert await inside(stub, lambda s: s.list(prefix="b", reverse=True)) == {
        "bb": "BB",
        "ba": "BA",
        "b": "B",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": "a", "start_after": "b"}, "start or start_after"),
        ({"limit": 0}, "limit must be a positive integer"),
        ({"limit": "3"}, "limit must be a positive integer"),
    ],
)
async def test_list_refuses_bad_arguments(stub, kwargs, message):
    with pytest.raises(ValueError, match=message):
        await inside(stub, lambda s: s.list(**kwargs))


async def test_delete_all_removes_entries_and_tables(stub):
    def fill(s):
        s.put("k", 1)
        s.sql.exec("CREATE TABLE t(x)")
        s.sql.exec("CREATE VIEW v AS SELECT x FROM t")
        s.sql.exec("CREATE INDEX t_x ON t(x)")

    await inside(stub, fill)
    await inside(stub, lambda s: s.delete_all())
    assert await inside(stub, lambda s: s.list()) == {}
    names = await inside(
        stub,
        lambda s: [r["name"] for r in s.sql.exec("SELECT name FROM sqlite_schema")],
    )
    assert [n for n in names if not n.startswith("_do_")] == []
    await inside(stub, lambda s: s.put("after", 2))
    assert await inside(stub, lambda s: s.get("after")) == 2


# -- limits and bad input leave state as it was -----------------------------------------


@pytest.mark.parametrize(
    ("operation", "error", "message"),
    [
        (lambda s: s.put("k" * 2049, 1), ValueError, "the limit is 2048 bytes"),
        (lambda s: s.put("é" * 1025, 1), ValueError, "Key is 2050 bytes"),
        (lambda s: s.put("big", b"x" * (2 * 1024 * 1024)), ValueError, "MAX_ENTRY_SIZE"),
        (lambda s: s.put(1, "v"), TypeError, "keys must be str, not int"),
        (lambda s: s.put("k", object()), TypeError, "not storable"),
        (lambda s: s.put("k", {1, 2}), TypeError, "set is not serializable"),
        (lambda s: s.put_many({"ok": 1, "bad": object()}), TypeError, "Value for key 'bad'"),
        (lambda s: s.put_many([("a", 1)]), TypeError, "mapping"),
        (lambda s: s.get_many("abc"), TypeError, "list of keys"),
        (lambda s: s.get(None), TypeError, "keys must be str"),
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(stub, operation, error, message):
    await inside(stub, lambda s: s.put("k", "original"))
    with pytest.raises(error, match=message):
        await inside(stub, operation)
    assert await inside(stub, lambda s: s.list()) == {"k": "original"}


async def test_limits_come_from_settings(settings):
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "MAX_KEY_SIZE": 4,
        "MAX_ENTRY_SIZE": 64,
    }
    stub = Plain.objects.get_by_name("limits")
    await inside(stub, lambda s: s.put("abcd", "x" * 50))
    with pytest.raises(ValueError, match="the limit is 4 bytes"):
        await inside(stub, lambda s: s.put("abcde", 1))
    with pytest.raises(ValueError, match="the limit is 64 bytes"):
        await inside(stub, lambda s: s.put("abcd", "x" * 80))
    assert await inside(stub, lambda s: s.get("abcd")) == "x" * 50


# -- SQL ---------------------------------------------------------------------------------


async def test_cursor_api(stub):
    def work(s):
        s.sql.exec("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, score REAL)")
        inserted = s.sql.exec(
            "INSERT INTO users(name, score) VALUES (?, ?), (?, ?) RETURNING id",
            "ann",
            1.5,
            "bob",
            None,
        )
        cursor = s.sql.exec("SELECT name, score FROM users ORDER BY id")
        return {
            "inserted": inserted.to_array(),
            "written": inserted.rows_written,
            "rows": list(cursor),
            "raw": cursor.raw(),
            "columns": cursor.column_names,
            "read": cursor.rows_read,
            "one": s.sql.exec("SELECT count(*) AS n FROM users").one(),
        }

    result = await inside(stub, work)
    assert result["inserted"] == [{"id": 1}, {"id": 2}]
    assert result["written"] == 2
    assert result["rows"] == [{"name": "ann", "score": 1.5}, {"name": "bob", "score": None}]
    assert result["raw"] == [("ann", 1.5), ("bob", None)]
    assert result["columns"] == ["name", "score"]
    assert result["read"] == 2
    assert result["one"] == {"n": 2}


async def test_one_requires_exactly_one_row(stub):
    with pytest.raises(ValueError, match="exactly one row.*got 0"):
        await inside(stub, lambda s: s.sql.exec("SELECT 1 WHERE 0").one())
    with pytest.raises(ValueError, match="got 2"):
        await inside(stub, lambda s: s.sql.exec("SELECT 1 UNION ALL SELECT 2").one())


async def test_several_statements_in_one_exec(stub):
    await inside(
        stub,
        lambda s: s.sql.exec(
            "CREATE TABLE a(x); INSERT INTO a VALUES (1); INSERT INTO a VALUES (2);"
        ),
    )
    rows = await inside(stub, lambda s: s.sql.exec("SELECT sum(x) AS s FROM a").one())
    assert rows == {"s": 3}
    with pytest.raises(ValueError, match="bindings only with a single statement"):
        await inside(stub, lambda s: s.sql.exec("SELECT ?; SELECT 2", 1))


async def test_bad_bindings_and_queries_are_type_errors(stub):
    with pytest.raises(TypeError, match="binding 1 is a dict"):
        await inside(stub, lambda s: s.sql.exec("SELECT ?", {"a": 1}))
    with pytest.raises(TypeError, match="takes the query as a str"):
        await inside(stub, lambda s: s.sql.exec(b"SELECT 1"))


async def test_database_size_grows(stub):
    assert await inside(stub, lambda s: s.sql.database_size) == 0
    await inside(stub, lambda s: s.sql.exec("CREATE TABLE blobs(b)"))
    small = await inside(stub, lambda s: s.sql.database_size)
    await inside(stub, lambda s: s.sql.exec("INSERT INTO blobs VALUES (zeroblob(100000))"))
    assert await inside(stub, lambda s: s.sql.database_size) > small + 90_000


async def test_sql_error_inside_a_handler_can_be_caught_and_the_event_goes_on(stub):
    def work(s):
        s.put("k", 1)
        with contextlib.suppress(sqlite3.OperationalError):
            s.sql.exec("SELECT * FROM nowhere")
        s.put("k", 2)

    await inside(stub, work)
    assert await inside(stub, lambda s: s.get("k")) == 2


# -- the authorizer ----------------------------------------------------------------------

FORBIDDEN = [
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT x",
    "RELEASE x",
    "ATTACH DATABASE ':memory:' AS other",
    "DETACH other",
    "SELECT * FROM _do_kv",
    "select value from _DO_KV",
    'SELECT * FROM "_do_meta"',
    "SELECT * FROM /* hidden */ _do_meta",
    "INSERT INTO _do_kv(key, value) VALUES ('x', x'00')",
    "UPDATE _do_meta SET value = 99 WHERE key = 'epoch'",
    "DELETE FROM _do_kv",
    "DROP TABLE _do_kv",
    "ALTER TABLE _do_kv RENAME TO mine",
    "CREATE INDEX sneaky ON _do_kv(value)",
    "CREATE TRIGGER sneaky AFTER INSERT ON _do_kv BEGIN SELECT 1; END",
    "CREATE TABLE _do_mine(x)",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA synchronous = OFF",
    "PRAGMA writable_schema = ON",
    "PRAGMA table_info(_do_kv)",
    "SELECT * FROM pragma_table_info('_do_kv')",
    "SELECT load_extension('x')",
    INTERNAL + "SELECT value FROM _do_kv WHERE key = ?",
]


@pytest.mark.parametrize("query", FORBIDDEN)
async def test_forbidden_sql_is_refused_and_changes_nothing(stub, query):
    await inside(stub, lambda s: s.put("k", "kept"))
    await inside(stub, lambda s: s.get("k"))  # internal statements are in the cache now
    params = ("k",) if "?" in query else ()
    with pytest.raises(ForbiddenQuery, match="Query refused"):
        await inside(stub, lambda s: s.sql.exec(query, *params))
    assert await inside(stub, lambda s: s.list()) == {"k": "kept"}
    assert await Plain.objects.get_by_name("storage").add(1, 1) == 2


async def test_forbidden_statement_says_why(stub):
    with pytest.raises(ForbiddenQuery, match="every event is already a transaction"):
        await inside(stub, lambda s: s.sql.exec("BEGIN"))
    with pytest.raises(ForbiddenQuery, match="internal table _do_kv is not accessible"):
        await inside(stub, lambda s: s.sql.exec("SELECT * FROM _do_kv"))
    with pytest.raises(ForbiddenQuery, match="PRAGMA synchronous is not allowed"):
        await inside(stub, lambda s: s.sql.exec("PRAGMA synchronous"))


async def test_allowed_pragmas_work(stub):
    await inside(stub, lambda s: s.sql.exec("CREATE TABLE users(id INTEGER PRIMARY KEY, name)"))
    columns = await inside(stub, lambda s: s.sql.exec("PRAGMA table_info(users)").to_array())
    assert [c["name"] for c in columns] == ["id", "name"]
    listed = await inside(
        stub, lambda s: s.sql.exec("SELECT name FROM pragma_table_info('users')").to_array()
    )
    assert [c["name"] for c in listed] == ["id", "name"]
    assert await inside(stub, lambda s: s.sql.exec("PRAGMA quick_check").one()) == {
        "quick_check": "ok"
    }


# -- transactions ------------------------------------------------------------------------


async def test_atomic_nests_and_rolls_back_only_the_inner_block(stub):
    def work(s):
        with s.atomic():
            s.put("outer", 1)
            try:
                with s.atomic():
                    s.put("inner", 1)
                    raise KeyError("inner fails")
            except KeyError:
                pass
            s.put("after", 1)

    await inside(stub, work)
    assert await inside(stub, lambda s: s.list()) == {"after": 1, "outer": 1}


async def test_transaction_sync_returns_its_value_all_or_nothing(stub):
    assert (
        await inside(stub, lambda s: s.transaction_sync(lambda: s.put("a", 1) or "done")) == "done"
    )

    def failing(s):
        def body():
            s.put("b", 1)
            s.sql.exec("CREATE TABLE inside_tx(x)")
            raise RuntimeError("no")

        try:
            s.transaction_sync(body)
        except RuntimeError:
            return "caught"

    assert await inside(stub, failing) == "caught"
    assert await inside(stub, lambda s: s.list()) == {"a": 1}
    tables = await inside(
        stub, lambda s: s.sql.exec("SELECT name FROM sqlite_schema WHERE name='inside_tx'").raw()
    )
    assert tables == []


async def test_committed_writes_are_read_by_a_new_activation(stub):
    ledger = Ledger.objects.get_by_name("new-activation")
    await ledger.add(3)
    await inside(stub, lambda s: s.put("k", "v"))
    await evict(ledger)
    await evict(stub)
    assert await ledger.total() == 3
    assert await inside(stub, lambda s: s.get("k")) == "v"


# -- the shard on disk -------------------------------------------------------------------


async def test_new_shards_take_the_page_size_setting_and_old_ones_keep_theirs(
    settings, storage_root
):
    old = Plain.objects.get_by_name("pages-before")
    await inside(old, lambda s: s.put("k", 1))
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "SHARD_PAGE_SIZE": 16384}
    new = Plain.objects.get_by_name("pages-after")
    await inside(new, lambda s: s.put("k", "x" * 40_000))  # a value over several pages
    await inside(old, lambda s: s.put("k", 2))
    sizes = {}
    for stub in (old, new):
        conn = sqlite3.connect(shard_path(storage_root, "tests.Plain", str(stub.id)))
        try:
            sizes[stub.id.name] = conn.execute("PRAGMA page_size").fetchone()[0]
        finally:
            conn.close()
    assert sizes == {"pages-before": 4096, "pages-after": 16384}
    assert await inside(new, lambda s: s.get("k")) == "x" * 40_000
    assert await inside(old, lambda s: s.get("k")) == 2


async def test_a_page_size_sqlite_would_ignore_creates_no_shard(settings, storage_root):
    old = Plain.objects.get_by_name("pages-kept")
    await inside(old, lambda s: s.put("k", 1))
    await evict(old)
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "SHARD_PAGE_SIZE": 1000}
    new = Plain.objects.get_by_name("pages-refused")
    with pytest.raises(Exception, match="SHARD_PAGE_SIZE must be a power of two"):
        await inside(new, lambda s: s.put("k", 1))
    assert not shard_path(storage_root, "tests.Plain", str(new.id)).exists()
    assert await inside(old, lambda s: s.get("k")) == 1  # an existing shard still opens


async def test_shard_layout_wal_and_no_file_without_writes(stub, storage_root):
    reader = Plain.objects.get_by_name("reader-only")
    assert await inside(reader, lambda s: s.get("x")) is None
    assert not shard_path(storage_root, "tests.Plain", str(reader.id)).exists()
    await inside(stub, lambda s: s.put("k", 1))
    path = storage_root / "tests" / "Plain" / str(stub.id)[:2] / f"{stub.id}.sqlite3"
    assert path == shard_path(storage_root, "tests.Plain", str(stub.id))
    assert path.exists()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        meta = dict(conn.execute("SELECT key, value FROM _do_meta"))
    finally:
        conn.close()
    assert meta["label"] == "tests.Plain"
    assert meta["id"] == str(stub.id)
    assert meta["name"] == "storage"
    assert meta["epoch"] >= 1


async def test_shard_files_finds_each_shard_once_by_label_and_id(stub, storage_root):
    from durable_objects.storage.files import shard_files

    other = Ledger.objects.get_by_name("listed")
    await inside(stub, lambda s: s.put("k", 1))
    await other.add(1)
    (storage_root / "tests" / "Plain" / "stray.txt").write_text("not a shard")
    found = sorted(shard_files(storage_root))
    assert [(f.label, f.hex_id) for f in found] == sorted(
        [("tests.Plain", str(stub.id)), ("tests.Ledger", str(other.id))]
    )
    assert found[0].path == shard_path(storage_root, found[0].label, found[0].hex_id)
    assert [f.hex_id for f in shard_files(storage_root, "tests.Plain")] == [str(stub.id)]
    assert list(shard_files(storage_root, "tests.Nothing")) == []


async def test_the_read_only_opener_reads_and_cannot_write_or_create(stub, storage_root):
    from durable_objects.storage.files import open_read_only

    await inside(stub, lambda s: s.put("k", 1))
    conn = open_read_only(shard_path(storage_root, "tests.Plain", str(stub.id)))
    try:
        assert conn.execute("SELECT count(*) FROM _do_kv").fetchone() == (1,)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM _do_kv")
    finally:
        conn.close()
    missing = storage_root / "tests" / "Plain" / "00" / "missing file?#.sqlite3"
    with pytest.raises(sqlite3.OperationalError):
        open_read_only(missing)
    assert not missing.exists()


def test_prefix_range_bounds_exactly_the_keys_with_the_prefix():
    from durable_objects.storage.kv import prefix_range

    assert prefix_range("b") == ("b", "c")
    assert prefix_range("a\U0010ffff") == ("a\U0010ffff", "b")
    assert prefix_range("\ud7ff") == ("\ud7ff", "\ue000")  # past the surrogates
    assert prefix_range("\U0010ffff") == ("\U0010ffff", None)


async def test_storage_outside_an_event_is_refused(stub):
    captured = await run_in_durable_object(stub, lambda obj, ctx: ctx.storage)
    with pytest.raises(RuntimeError, match="outside an event"):
        captured.put("k", 1)
    assert await inside(stub, lambda s: s.get("k")) is None


async def test_full_text_search_works(stub):
    def work(s):
        s.sql.exec("CREATE VIRTUAL TABLE docs USING fts5(body)")
        s.sql.exec("INSERT INTO docs(body) VALUES ('durable objects for django'), ('other')")
        return s.sql.exec("SELECT body FROM docs WHERE docs MATCH 'django'").to_array()

    assert await inside(stub, work) == [{"body": "durable objects for django"}]


async def test_tuple_keys_come_back_as_tuples(stub):
    await inside(stub, lambda s: s.put("k", {(1, (2, "x")): "v", "plain": [1]}))
    assert await inside(stub, lambda s: s.get("k")) == {(1, (2, "x")): "v", "plain": [1]}


async def test_deletes_on_an_object_without_storage_create_no_shard(stub, storage_root):
    assert await inside(stub, lambda s: s.delete("k")) is False
    assert await inside(stub, lambda s: s.delete_many(["a", "b"])) == 0
    assert list(storage_root.glob("**/*.sqlite3")) == []
