"""Export, import and copy of one object's database, on the embedded host.

Real shards, the real host on its background thread, the commands through call_command.
Every refused import leaves the target's database as it was.
"""

import sqlite3
import time

import pytest
from asgiref.sync import async_to_sync
from django.core.management import CommandError, call_command

from durable_objects.backups import export_object, import_object
from durable_objects.storage.backup import InvalidBackup
from durable_objects.storage.files import shard_path
from durable_objects.testing import run_in_durable_object
from tests.support.objects import Counter
from tests.support.objects_backup import Archive

pytestmark = pytest.mark.django_db(transaction=True)

LABEL = Archive._meta.label


def call(stub, method, *args, **kwargs):
    return async_to_sync(getattr(stub, method))(*args, **kwargs)


def filled(name, *bodies, alarm=None, **entries):
    stub = Archive.objects.get_by_name(name)
    for body in bodies:
        call(stub, "add", body, **entries)
    if alarm is not None:
        call(stub, "arm", alarm)
    return stub


def state(stub):
    return call(stub, "notes"), call(stub, "entries"), call(stub, "alarm_time")


def meta_of(storage_root, stub, key):
    path = shard_path(storage_root, LABEL, str(stub.id))
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT value FROM _do_meta WHERE key = ?", (key,)).fetchone()[0]


# -- round trips -------------------------------------------------------------------------


def test_export_then_import_round_trips_tables_entries_and_alarm(tmp_path):
    when = time.time() + 3600
    source = filled("source", "first", "second", colour="blue", alarm=when)
    exported = export_object(Archive, source.id, tmp_path / "source.sqlite3")
    assert exported.size == (tmp_path / "source.sqlite3").stat().st_size

    target = filled("target", "old note", colour="red")
    result = import_object(Archive, target.id, exported.path)

    assert state(target) == (["first", "second"], {"colour": "blue"}, when)
    assert result.source_id == str(source.id)
    assert result.entries == 1
    assert result.tables == ["notes"]
    assert result.alarm["scheduled_at"] == when
    assert state(source) == (["first", "second"], {"colour": "blue"}, when)


def test_exported_file_is_one_self_contained_sqlite_database(tmp_path):
    source = filled("single", "a note", k=1)
    path = export_object(Archive, source.id, tmp_path / "copy.sqlite3").path
    assert not (tmp_path / "copy.sqlite3-wal").exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("SELECT body FROM notes").fetchall() == [("a note",)]
        assert conn.execute("SELECT count(*) FROM _do_sockets").fetchone()[0] == 0


def test_export_holds_writes_queued_before_it_in_the_same_batch(tmp_path):
    import asyncio

    from durable_objects.backups import aexport_object

    source = filled("batched", "committed")

    async def hold(instance, ctx):
        await asyncio.sleep(0.3)  # the write and the export queue behind this: one batch

    async def write_then_export():
        blocker = asyncio.ensure_future(run_in_durable_object(source, hold))
        await asyncio.sleep(0.05)
        write = asyncio.ensure_future(source.add("queued just before"))
        await asyncio.sleep(0.05)
        exported = await aexport_object(Archive, source.id, tmp_path / "batched.sqlite3")
        await asyncio.gather(blocker, write)
        return exported

    path = async_to_sync(write_then_export)().path
    with sqlite3.connect(path) as conn:
        bodies = [row[0] for row in conn.execute("SELECT body FROM notes")]
    assert bodies == ["committed", "queued just before"]


def test_import_resets_the_instance_and_continues_the_epoch(tmp_path, storage_root):
    source = filled("epoch-source", "from the source")
    path = export_object(Archive, source.id, tmp_path / "e.sqlite3").path
    target = filled("epoch-target", "before")
    assert call(target, "seen_at_construction") == []
    epoch_before = meta_of(storage_root, target, "epoch")
    for _ in range(3):  # the source's epoch is ahead of the target's, or level
        async_to_sync(run_in_durable_object)(source, lambda i, c: None)

    import_object(Archive, target.id, path)

    # The next event constructs a new instance on the imported database.
    assert call(target, "seen_at_construction") == ["from the source"]
    assert meta_of(storage_root, target, "epoch") == epoch_before + 1
    assert meta_of(storage_root, target, "id") == str(target.id)
    assert meta_of(storage_root, target, "name") == "epoch-target"


def test_import_into_an_object_without_storage_creates_it(tmp_path, storage_root):
    source = filled("to-new", "hello")
    path = export_object(Archive, source.id, tmp_path / "n.sqlite3").path
    target = Archive.objects.get_by_name("brand-new")
    import_object(Archive, target.id, path)
    assert call(target, "notes") == ["hello"]
    assert shard_path(storage_root, LABEL, str(target.id)).exists()


def test_imported_alarm_is_armed_again_and_fires_in_the_target(tmp_path):
    source = filled("alarm-source", "x", alarm=time.time() + 1.0)
    path = export_object(Archive, source.id, tmp_path / "a.sqlite3").path
    call(source, "arm", time.time() + 3600)  # the source's own alarm is not the one to fire
    target = filled("alarm-target", "y")
    import_object(Archive, target.id, path)

    deadline = time.monotonic() + 15
    while call(target, "runs") == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert call(target, "runs") == 1
    assert call(source, "runs") == 0


# -- copy --------------------------------------------------------------------------------


def test_copy_clones_one_object_into_another():
    when = time.time() + 600
    source = filled("copy-source", "n1", "n2", size=3, alarm=when)
    target = filled("copy-target", "gone")
    result = Archive.objects.copy(source.id, str(target.id))
    assert state(target) == (["n1", "n2"], {"size": 3}, when)
    assert result.source_id == str(source.id)
    assert state(source) == (["n1", "n2"], {"size": 3}, when)


def test_copy_with_a_bookmark_is_refused_without_replication():
    source, target = filled("bm-source", "a"), filled("bm-target", "b")
    with pytest.raises(ValueError, match="point-in-time recovery"):
        Archive.objects.copy(source.id, target.id, bookmark="0000")
    assert call(target, "notes") == ["b"]


def test_copy_onto_itself_is_refused():
    source = filled("self-copy", "a")
    with pytest.raises(ValueError, match="two different objects"):
        Archive.objects.copy(source.id, source.id)


def test_copy_of_an_id_of_another_class_is_refused():
    source = filled("class-source", "a")
    with pytest.raises(ValueError, match="not of"):
        Archive.objects.copy(source.id, Counter.objects.id_from_name("x"))


# -- bad input ---------------------------------------------------------------------------


@pytest.fixture
def victim():
    """An object whose database each bad import must leave as it is."""
    stub = filled("victim", "keep me", keep=True, alarm=time.time() + 7200)
    return stub, state(stub)


@pytest.fixture
def good_export(tmp_path):
    source = filled("good", "good note", good=1)
    return export_object(Archive, source.id, tmp_path / "good.sqlite3").path


def refused(stub, path, match):
    with pytest.raises(InvalidBackup, match=match):
        import_object(Archive, stub.id, path)


def edited(path, *statements):
    with sqlite3.connect(path) as conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()
    return path


def test_a_file_that_is_not_sqlite_is_refused(victim, tmp_path):
    stub, before = victim
    path = tmp_path / "text.sqlite3"
    path.write_text("id,body\n1,hello\n" * 20)
    refused(stub, path, "not a SQLite database")
    assert state(stub) == before


def test_an_empty_file_is_refused(victim, tmp_path):
    stub, before = victim
    path = tmp_path / "empty.sqlite3"
    path.write_bytes(b"")
    refused(stub, path, "empty")
    assert state(stub) == before


def test_a_corrupt_file_is_refused(victim, good_export):
    stub, before = victim
    data = bytearray(good_export.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    for offset in range(page_size, len(data), 7):  # every page after the first, scrambled
        data[offset] ^= 0x5A
    good_export.write_bytes(bytes(data))
    refused(stub, good_export, "corrupt|not a readable SQLite database")
    assert state(stub) == before


def test_a_plain_sqlite_database_is_refused(victim, tmp_path):
    stub, before = victim
    path = edited(tmp_path / "plain.sqlite3", "CREATE TABLE notes(body TEXT)")
    refused(stub, path, "not the database of a durable object")
    assert state(stub) == before


def test_a_database_of_a_newer_schema_is_refused(victim, good_export):
    stub, before = victim
    edited(good_export, "PRAGMA user_version = 99")
    refused(stub, good_export, "version 99, newer than")
    assert state(stub) == before


def test_a_database_of_another_class_is_refused(victim, tmp_path):
    stub, before = victim
    counter = Counter.objects.get_by_name("other-class")
    async_to_sync(counter.increment)()
    path = export_object(Counter, counter.id, tmp_path / "counter.sqlite3").path
    refused(stub, path, f"database of {Counter._meta.label}, not of {LABEL}")
    assert state(stub) == before


@pytest.mark.parametrize(
    ("statements", "match"),
    [
        (["ALTER TABLE _do_kv ADD COLUMN extra TEXT"], "_do_kv table has another shape"),
        (["DROP TABLE _do_alarm"], r"lacks the tables \['_do_alarm'\]"),
        (["CREATE TABLE _do_extra(x)"], "internal tables this version does not know"),
        (
            [
                "CREATE TRIGGER t AFTER INSERT ON _do_kv BEGIN "
                "UPDATE _do_meta SET value = 0 WHERE key = 'epoch'; END"
            ],
            "trigger 't' on or naming an internal table",
        ),
        (
            ["CREATE TRIGGER u AFTER INSERT ON notes BEGIN DELETE FROM _do_kv; END"],
            "trigger 'u' on or naming an internal table",
        ),
        (["CREATE VIEW secrets AS SELECT * FROM _do_meta"], "view 'secrets'"),
        (["CREATE INDEX kv_values ON _do_kv(value)"], "index 'kv_values' on the internal"),
        (["UPDATE _do_meta SET value = 'x' WHERE key = 'epoch'"], "epoch is 'x'"),
    ],
)
def test_internal_tables_of_the_wrong_shape_are_refused(victim, good_export, statements, match):
    stub, before = victim
    edited(good_export, *statements)
    refused(stub, good_export, match)
    assert state(stub) == before


def test_a_database_of_an_older_schema_is_imported_and_brought_up_to_date(tmp_path):
    source = filled("old-schema", "from version 2", kept="yes")
    path = export_object(Archive, source.id, tmp_path / "v2.sqlite3").path
    edited(path, "DROP TABLE _do_alarm", "PRAGMA user_version = 2")  # as version 2 wrote it
    target = filled("new-schema", "replaced")
    result = import_object(Archive, target.id, path)
    assert result.schema_version == 2
    assert state(target) == (["from version 2"], {"kept": "yes"}, None)
    call(target, "arm", time.time() + 60)  # the alarm table is back
    assert call(target, "alarm_time") is not None


def test_a_file_over_max_import_size_is_refused_before_it_is_read(victim, good_export, settings):
    stub, before = victim
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "MAX_IMPORT_SIZE": 4096}

    class Unreadable:
        size = good_export.stat().st_size

        def read(self, n=-1):
            raise AssertionError("the file was read")

    with pytest.raises(InvalidBackup, match="limited to 4096 bytes"):
        import_object(Archive, stub.id, good_export)
    with pytest.raises(InvalidBackup, match="limited to 4096 bytes"):
        import_object(Archive, stub.id, Unreadable())
    assert state(stub) == before


def test_a_stream_over_max_import_size_is_refused_by_the_holder(victim, good_export, settings):
    stub, before = victim
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "MAX_IMPORT_SIZE": 4096}
    # No size known in advance: the holder counts the bytes as they come.
    with (
        open(good_export, "rb") as file,
        pytest.raises(InvalidBackup, match="The upload is .* limited to 4096 bytes"),
    ):
        import_object(Archive, stub.id, _Stream(file))
    assert state(stub) == before


class _Stream:
    def __init__(self, file):
        self.file = file

    def read(self, n=-1):
        return self.file.read(min(n, 1024))


def test_refused_imports_leave_no_spool_files(victim, tmp_path, storage_root):
    stub, _ = victim
    path = edited(tmp_path / "plain.sqlite3", "CREATE TABLE notes(body TEXT)")
    refused(stub, path, "not the database")
    assert list((storage_root / ".backups").glob("*")) == []


# -- the commands ------------------------------------------------------------------------


def test_export_and_import_commands_round_trip(tmp_path, capsys):
    source = filled("cmd-source", "via the command", via="cli")
    out = tmp_path / "cmd.sqlite3"
    call_command("export_object", LABEL, "cmd-source", "-o", str(out))
    assert f"Exported {LABEL} {source.id}" in capsys.readouterr().out

    target = filled("cmd-target", "replaced")
    call_command("import_object", LABEL, str(target.id), str(out))
    assert "1 entry, 1 table, no alarm" in capsys.readouterr().out
    assert call(target, "notes") == ["via the command"]


def test_export_command_refuses_an_object_without_storage(tmp_path):
    with pytest.raises(CommandError, match="has no storage"):
        call_command("export_object", LABEL, "never-used", "-o", str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_commands_refuse_an_unknown_label(tmp_path):
    with pytest.raises(CommandError, match="No DurableObject class is labelled 'tests.Nope'"):
        call_command("export_object", "tests.Nope", "x", "-o", str(tmp_path / "x"))


def test_import_command_names_the_problem_and_leaves_the_database(victim, tmp_path):
    stub, before = victim
    path = tmp_path / "notes.txt"
    path.write_text("not a database at all, just text" * 10)
    with pytest.raises(CommandError, match="not a SQLite database.*unchanged"):
        call_command("import_object", LABEL, "victim", str(path))
    assert state(stub) == before


def test_import_command_beside_a_running_embedded_host_says_what_to_do(tmp_path, storage_root):
    import os
    import subprocess
    import sys

    from tests.support.servers import REPO

    stub = filled("locked", "held by this process")  # this process's host holds the lock
    path = export_object(Archive, stub.id, tmp_path / "locked.sqlite3").path
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.support.settings",
        "DO_TEST_STORAGE_ROOT": str(storage_root),
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "import_object", LABEL, "locked", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "is in use by process" in done.stderr
    assert "run the command while it is stopped" in done.stderr
    assert "Traceback" not in done.stderr


# -- the backup event kind from another process -------------------------------------------


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"op": "read", "token": "../../../etc/passwd"}, "'token' a transfer token is 32"),
        ({"op": "remove"}, "Unknown backup operation 'remove'"),
        ({"op": "read", "token": "0" * 32, "offset": -1}, "offset and length must be >= 0"),
        ({"op": "stage", "data": "text"}, "'data' must be bytes, not str"),
        ({"op": "import", "path": "/tmp/x"}, r"unknown fields \['path'\]"),
    ],
)
def test_backup_events_from_another_process_are_checked(fields, problem):
    from durable_objects.backups.events import BackupOperation

    with pytest.raises(ValueError, match=problem):
        BackupOperation.from_wire(fields, chain=[], name=None)


def test_a_spooled_export_is_readable_only_through_its_own_object():
    from durable_objects.backups.transfer import _run

    source, other = filled("spool-owner", "private"), filled("spool-other", "x")
    spooled = async_to_sync(_run)(Archive, source.id, "export")
    with pytest.raises(LookupError, match="No transfer with that token"):
        async_to_sync(_run)(Archive, other.id, "read", token=spooled["token"], length=100)
    chunk = async_to_sync(_run)(Archive, source.id, "read", token=spooled["token"], length=16)
    assert chunk == b"SQLite format 3\x00"
    assert async_to_sync(_run)(Archive, source.id, "discard", token=spooled["token"]) is True


def socket_ids(storage_root, stub):
    path = shard_path(storage_root, LABEL, str(stub.id))
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT id FROM _do_sockets ORDER BY id").fetchall()
    conn.close()
    return [row[0] for row in rows]


def with_socket_row(stub, socket_id):
    """Write a _do_sockets row as an accepted socket would (no connection behind it)."""
    from durable_objects.events.base import current_event

    def write(instance, ctx):
        activation, _ = current_event.get()
        activation.shard_for_event().execute(
            "INSERT INTO main._do_sockets (id, channel, holder, tags, attachment, accepted_at)"
            " VALUES (?, 'channel', 'holder', '[]', NULL, 0)",
            (socket_id,),
        )

    async_to_sync(run_in_durable_object)(stub, write)


def test_import_keeps_the_targets_socket_rows_and_drops_the_files(tmp_path, storage_root):
    source = filled("sockets-source", "s")
    with_socket_row(source, "source-socket")
    path = export_object(Archive, source.id, tmp_path / "s.sqlite3").path
    target = filled("sockets-target", "t")
    with_socket_row(target, "target-socket")

    import_object(Archive, target.id, path)

    assert socket_ids(storage_root, target) == ["target-socket"]
    assert socket_ids(storage_root, source) == ["source-socket"]


def test_an_object_cannot_copy_onto_itself_from_its_own_event():
    filled("onto-source", "theirs")
    target = filled("onto-me", "mine")
    with pytest.raises(RuntimeError, match="cannot replace its own database"):
        call(target, "copy_onto_me", "onto-source")
    assert call(target, "notes") == ["mine"]


def test_an_object_can_copy_itself_into_another_from_its_own_event():
    source = filled("copy-me", "original")
    assert call(source, "copy_me_to", "copy-of-me") == str(source.id)
    assert call(Archive.objects.get_by_name("copy-of-me"), "notes") == ["original"]
    assert call(source, "notes") == ["original"]


def test_schedules_and_queued_tasks_survive_export_and_import_and_fire(tmp_path):
    """Schedules and queued tasks are rows of the shard: an import brings them, and the
    object's wake time (the alarm the backend holds) is armed again from them."""
    from tests.support.objects_schedules import Scheduled

    source = Scheduled.objects.get_by_name("schedules-source")
    async_to_sync(source.plan)(3600, "record", "later", id="later")
    async_to_sync(source.plan)(0.3, "record", "soon", id="soon")
    exported = export_object(Scheduled, source.id, tmp_path / "scheduled.sqlite3")
    async_to_sync(source.cancel)("soon")  # only the copy keeps it now

    target = Scheduled.objects.get_by_name("schedules-target")
    async_to_sync(target.runs)()  # make the target exist, with no schedules
    import_object(Scheduled, target.id, exported.path)
    ids = sorted(s["id"] for s in async_to_sync(target.schedules)())
    assert "later" in ids
    deadline = time.monotonic() + 20
    while not [r for r in async_to_sync(target.runs)() if r["tag"] == "soon"]:
        assert time.monotonic() < deadline, "the imported schedule never ran"
        time.sleep(0.1)
    assert not [r for r in async_to_sync(source.runs)() if r["tag"] == "soon"]
