"""Point-in-time recovery of one object on the embedded host (issue 15, part 2).

The embedded default (local placement) with REPLICATION on: a real ``litestream
replicate`` daemon and a file:// replica (or SeaweedFS's S3 API), the real host on its
background thread, commands through call_command. Every refused restore leaves the
object's database as it was.
"""

import sqlite3
import time
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from django.core.management import CommandError, call_command

from durable_objects.backups import restore_object
from durable_objects.runtime.lifecycle import get_host, reset_host
from durable_objects.storage.files import shard_path
from durable_objects.storage.replication import local_generation, restore
from durable_objects.storage.replication.bookmarks import InvalidBookmark
from tests.support.objects_backup import Archive

pytest_plugins = ["tests.support.replication"]
pytestmark = pytest.mark.django_db(transaction=True)

LABEL = Archive._meta.label


def call(stub, method, *args, **kwargs):
    return async_to_sync(getattr(stub, method))(*args, **kwargs)


@pytest.fixture
def replicated(settings, monkeypatch, replica, litestream_daemon):
    """Replication on for this test's host: the replica of the test's own, "replicated"."""
    return replicate(settings, monkeypatch, replica, litestream_daemon)


def replicate(settings, monkeypatch, replica, daemon, **extra):
    for key, value in replica.environ.items():
        monkeypatch.setenv(key, value)
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "REPLICATION": {
            "REPLICA_URL": replica.prefix,
            "SOCKET": str(daemon.socket_path),
            "DURABILITY": "replicated",
            "SYNC_TIMEOUT": 10.0,
            **extra,
        },
    }
    reset_host()
    return replica


def state(stub):
    return call(stub, "notes"), call(stub, "entries")


def between_two_writes(stub):
    """Write "first", note a moment, write "second"; return the moment (UNIX seconds)."""
    call(stub, "add", "first", colour="blue")
    time.sleep(0.05)  # the replica's file of the first write is older than the moment
    moment = time.time()
    time.sleep(0.05)
    call(stub, "add", "second", colour="red", size=2)
    return moment


# -- restoring -----------------------------------------------------------------------------


def test_restore_to_a_time_between_two_writes_yields_the_earlier_state(replicated):
    stub = Archive.objects.get_by_name(f"between-{replicated.kind}")
    moment = between_two_writes(stub)
    assert state(stub) == (["first", "second"], {"colour": "red", "size": 2})

    result = restore_object(Archive, stub.id, when=moment)

    assert state(stub) == (["first"], {"colour": "blue"})
    assert result.entries == 1 and "notes" in result.tables and not result.dry_run
    assert call(stub, "seen_at_construction") == ["first"]  # a new instance, restored


def test_a_bookmark_restores_exactly_its_state_from_inside_the_object(replicated):
    stub = Archive.objects.get_by_name(f"bookmark-{replicated.kind}")
    call(stub, "add", "kept", colour="blue")
    bookmark = call(stub, "bookmark")
    call(stub, "add", "lost", colour="red")

    assert call(stub, "restore_to", bookmark) == bookmark
    assert state(stub) == (["kept"], {"colour": "blue"})
    # Writes after the restore go on in a new generation, replicated as ever.
    call(stub, "add", "after")
    assert state(stub) == (["kept", "after"], {"colour": "blue"})


@pytest.mark.parametrize("replica", ["file"], indirect=True)
def test_with_local_durability_a_bookmark_is_exact_too(
    settings, monkeypatch, replica, litestream_daemon
):
    replicate(settings, monkeypatch, replica, litestream_daemon, DURABILITY="local")
    stub = Archive.objects.get_by_name("local")
    call(stub, "add", "kept", colour="blue")
    bookmark = call(stub, "bookmark")  # forces the sync "local" would leave for later
    call(stub, "add", "lost", colour="red")
    call(stub, "restore_to", bookmark)
    assert state(stub) == (["kept"], {"colour": "blue"})


def test_the_rest_of_the_restoring_event_has_no_storage(replicated):
    stub = Archive.objects.get_by_name("closed-after")
    call(stub, "add", "kept")
    bookmark = call(stub, "bookmark")
    call(stub, "add", "lost")
    with pytest.raises(Exception, match="restored to an earlier point"):
        call(stub, "restore_then_write", bookmark)
    assert state(stub) == (["kept"], {})  # restored, and the write after it never made


def test_a_bookmark_inside_atomic_is_refused_and_rolled_back(replicated):
    stub = Archive.objects.get_by_name("atomic")
    call(stub, "add", "kept")
    with pytest.raises(RuntimeError, match="not allowed inside storage.atomic"):
        call(stub, "bookmark_in_atomic")
    assert state(stub) == (["kept"], {})


def test_a_restore_starts_a_new_generation_that_holds_the_restored_state(
    replicated, storage_root, tmp_path
):
    stub = Archive.objects.get_by_name("generation")
    call(stub, "add", "kept")
    bookmark = call(stub, "bookmark")
    call(stub, "add", "lost")
    path = shard_path(storage_root, LABEL, str(stub.id))
    assert local_generation(path) in (None, 1)  # a new shard is generation 1

    call(stub, "restore_to", bookmark)

    assert local_generation(path) == 2
    settings = get_host().replicator.settings
    copies = {}
    for generation in (1, 2):
        target = tmp_path / f"gen{generation}.sqlite3"
        restore(target, settings.shard_replica_url(LABEL, str(stub.id), generation))
        with sqlite3.connect(target) as conn:
            copies[generation] = [row[0] for row in conn.execute("SELECT body FROM notes")]
    assert copies == {1: ["kept", "lost"], 2: ["kept"]}  # the old history is kept


def test_a_bookmark_stays_valid_after_later_restores(replicated):
    stub = Archive.objects.get_by_name("twice")
    call(stub, "add", "one")
    first = call(stub, "bookmark")
    call(stub, "add", "two")
    second = call(stub, "bookmark")
    call(stub, "restore_to", first)
    assert call(stub, "notes") == ["one"]
    call(stub, "restore_to", second)  # a bookmark of generation 1, now in generation 2
    assert call(stub, "notes") == ["one", "two"]


def test_the_restored_alarm_is_armed_again(replicated):
    stub = Archive.objects.get_by_name("alarm")
    soon = time.time() + 1.0
    call(stub, "arm", soon)
    bookmark = call(stub, "bookmark")
    call(stub, "arm", time.time() + 3600)
    call(stub, "restore_to", bookmark)
    assert call(stub, "alarm_time") == soon
    deadline = time.monotonic() + 30
    while call(stub, "runs") == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert call(stub, "runs") == 1  # the restored alarm ran


def test_a_dry_run_says_what_would_come_back_and_changes_nothing(replicated):
    stub = Archive.objects.get_by_name("dry")
    moment = between_two_writes(stub)
    result = restore_object(Archive, stub.id, when=moment, dry_run=True)
    assert result.dry_run and result.entries == 1
    assert state(stub) == (["first", "second"], {"colour": "red", "size": 2})


def test_copy_with_a_bookmark_copies_the_sources_earlier_state(replicated):
    source = Archive.objects.get_by_name("copy-source")
    target = Archive.objects.get_by_name("copy-target")
    call(source, "add", "early", colour="blue")
    bookmark = call(source, "bookmark")
    call(source, "add", "late", colour="red")
    call(target, "add", "replaced")

    result = Archive.objects.copy(source.id, target.id, bookmark=bookmark)

    assert result.source_id == str(source.id)
    assert state(target) == (["early"], {"colour": "blue"})
    assert state(source) == (["early", "late"], {"colour": "red"})  # the source as it was


# -- the command ---------------------------------------------------------------------------


def test_restore_object_command_to_a_time_and_to_a_bookmark(replicated, capsys):
    stub = Archive.objects.get_by_name("command")
    moment = between_two_writes(stub)
    iso = datetime.fromtimestamp(moment, UTC).isoformat()

    call_command("restore_object", LABEL, "command", "--to", iso, "--dry-run")
    out = capsys.readouterr().out
    assert "Dry run" in out and "1 entry" in out
    assert call(stub, "notes") == ["first", "second"]

    call_command("restore_object", LABEL, "command", "--to", iso)
    assert "Restored" in capsys.readouterr().out
    assert call(stub, "notes") == ["first"]

    call(stub, "add", "third")
    bookmark = call(stub, "bookmark")
    call(stub, "add", "fourth")
    call_command("restore_object", LABEL, str(stub.id), "--bookmark", bookmark)
    assert call(stub, "notes") == ["first", "third"]


def test_restore_object_command_names_bad_input(replicated):
    call(Archive.objects.get_by_name("cmd-bad"), "add", "x")
    with pytest.raises(CommandError, match="not a bookmark"):
        call_command("restore_object", LABEL, "cmd-bad", "--bookmark", "nonsense")
    with pytest.raises(CommandError, match="ISO 8601"):
        call_command("restore_object", LABEL, "cmd-bad", "--to", "yesterday")
    with pytest.raises(CommandError, match="in the future"):
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        call_command("restore_object", LABEL, "cmd-bad", "--to", future)
    with pytest.raises(CommandError):
        call_command("restore_object", LABEL, "cmd-bad")  # neither --to nor --bookmark
    assert call(Archive.objects.get_by_name("cmd-bad"), "notes") == ["x"]


# -- bad input -----------------------------------------------------------------------------


def refused(stub, bookmark, match):
    before = state(stub)
    with pytest.raises(InvalidBookmark, match=match):
        call(stub, "restore_to", bookmark)
    with pytest.raises(InvalidBookmark, match=match):
        restore_object(Archive, stub.id, bookmark=bookmark)
    assert state(stub) == before


def test_a_bookmark_of_another_object_is_refused(replicated):
    other = Archive.objects.get_by_name("other")
    call(other, "add", "theirs")
    theirs = call(other, "bookmark")
    stub = Archive.objects.get_by_name("mine")
    call(stub, "add", "mine")
    refused(stub, theirs, "belongs to another object")
    with pytest.raises(InvalidBookmark, match="belongs to another object"):
        Archive.objects.copy(stub.id, other.id, bookmark=theirs)  # the source's, not the target's
    assert call(other, "notes") == ["theirs"]


@pytest.mark.parametrize(
    "bookmark",
    ["", "nonsense", "do1-00000000-1-t-0", "do1-zz-1-0000000000000001-1", "x" * 5000],
)
def test_a_malformed_bookmark_is_refused(replicated, bookmark):
    stub = Archive.objects.get_by_name("malformed")
    call(stub, "add", "kept")
    refused(stub, bookmark, "not a bookmark|another object|limit")


def test_a_bookmark_outside_retention_is_refused(
    settings, monkeypatch, replica, litestream_daemon
):
    replicate(settings, monkeypatch, replica, litestream_daemon, RETENTION=1)
    stub = Archive.objects.get_by_name("retention")
    call(stub, "add", "old")
    bookmark = call(stub, "bookmark")
    time.sleep(1.2)  # past the retention window
    call(stub, "add", "new")
    refused(stub, bookmark, "outside the retention window")
    with pytest.raises(InvalidBookmark, match="outside the retention window"):
        call(stub, "bookmark_for_time", time.time() - 60)


def test_a_time_in_the_future_is_refused(replicated):
    stub = Archive.objects.get_by_name("future")
    call(stub, "add", "kept")
    with pytest.raises(InvalidBookmark, match="in the future"):
        call(stub, "bookmark_for_time", time.time() + 3600)
    with pytest.raises(InvalidBookmark, match="in the future"):
        restore_object(Archive, stub.id, when=datetime.now(UTC) + timedelta(minutes=5))
    assert state(stub) == (["kept"], {})


def test_a_time_before_the_object_was_replicated_is_refused(replicated):
    stub = Archive.objects.get_by_name("too-early")
    before = time.time() - 10
    call(stub, "add", "kept")
    with pytest.raises(InvalidBookmark, match="holds no state from before"):
        restore_object(Archive, stub.id, when=before)
    assert state(stub) == (["kept"], {})


def test_without_replication_bookmarks_are_refused():
    stub = Archive.objects.get_by_name("no-replication")
    call(stub, "add", "kept")
    with pytest.raises(InvalidBookmark, match="needs point-in-time recovery"):
        call(stub, "bookmark")
    with pytest.raises(InvalidBookmark, match="needs point-in-time recovery"):
        restore_object(Archive, stub.id, when=time.time())
    assert state(stub) == (["kept"], {})


def test_a_time_after_the_last_write_restores_the_newest_state(replicated):
    stub = Archive.objects.get_by_name("idle-since")
    call(stub, "add", "first", colour="blue")
    bookmark = call(stub, "bookmark")
    call(stub, "add", "second")
    time.sleep(0.05)
    moment = time.time()
    call(stub, "restore_to", bookmark)  # generation 2 begins after the moment
    assert call(stub, "notes") == ["first"]
    # The moment lies after generation 1's last write and before generation 2 began.
    restore_object(Archive, stub.id, when=moment)
    assert state(stub) == (["first", "second"], {"colour": "blue"})
    restore_object(Archive, stub.id, when=time.time())  # generation 3's newest: the same
    assert state(stub) == (["first", "second"], {"colour": "blue"})


# -- sockets -------------------------------------------------------------------------------


@pytest.mark.parametrize("replica", ["file"], indirect=True)
async def test_a_restore_closes_open_sockets_with_4205(replicated):
    import json

    from channels.testing import WebsocketCommunicator

    from durable_objects.backups import arestore_object
    from tests.support.asgi import application
    from tests.support.objects_sockets import Room

    ann = WebsocketCommunicator(application, "/ws/room/restored/?user=ann")
    connected, _ = await ann.connect()
    assert connected
    await ann.send_to("hello")
    assert json.loads(await ann.receive_from(5)) == {"user": "ann", "text": "hello"}
    time.sleep(0.05)
    moment = time.time()
    time.sleep(0.05)
    await ann.send_to("later")
    assert json.loads(await ann.receive_from(5))["text"] == "later"

    await arestore_object(Room, Room.objects.id_from_name("restored"), when=moment)

    closed = await ann.receive_output(5)
    assert closed == {
        "type": "websocket.close",
        "code": 4205,
        "reason": "The object was restored to an earlier point; reconnect.",
    }
    room = Room.objects.get_by_name("restored")
    assert await room.history() == [{"user": "ann", "text": "hello"}]
    assert await room.records("closed:") == {}  # the object closed it: no websocket_close
