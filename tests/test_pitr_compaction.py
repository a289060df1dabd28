"""What a point in time holds once Litestream compacts a replica (issue 15, part 2).

Litestream 0.5 restores ``-txid N`` only to the end of a file it keeps: each sync's
level-0 file, or a compacted level-1+ file's last transaction. Once level 0 is deleted
(``l0-retention``, five minutes by default) a bookmark inside a compacted range is gone.
``daemon_config(retention=RETENTION)`` keeps level 0 for the whole window; these tests
run a daemon that compacts every second and show both.
"""

import time

import pytest
from asgiref.sync import async_to_sync

from durable_objects.backups import restore_object
from durable_objects.runtime.lifecycle import reset_host
from durable_objects.storage.replication import daemon_config
from durable_objects.storage.replication.bookmarks import InvalidBookmark
from durable_objects.testing.replication import LitestreamDaemon
from tests.support.objects_backup import Archive

pytestmark = pytest.mark.django_db(transaction=True)


def call(stub, method, *args):
    return async_to_sync(getattr(stub, method))(*args)


def replicate(settings, tmp_path, daemon):
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "REPLICATION": {
            "REPLICA_URL": (tmp_path / "replicas").as_uri(),
            "SOCKET": str(daemon.socket_path),
            "DURABILITY": "replicated",
            "SYNC_TIMEOUT": 10.0,
        },
    }
    reset_host()


def three_bookmarks(stub):
    """Three writes, each with its bookmark (one sync each), and a moment after the first."""
    marks = []
    for body in ("one", "two", "three"):
        call(stub, "add", body)
        marks.append(call(stub, "bookmark"))
        if body == "one":
            time.sleep(0.05)
            moment = time.time()
            time.sleep(0.05)
    return (*marks, moment)


def level_files(tmp_path, stub, level):
    shard = tmp_path / "replicas" / "tests.Archive" / str(stub.id)[:2] / str(stub.id) / "1"
    return sorted((shard / "ltx" / str(level)).glob("*.ltx"))


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the daemon did not compact in time"
        time.sleep(0.2)


@pytest.fixture
def daemon_factory(tmp_path):
    daemons = []

    def start(**config):
        daemon = LitestreamDaemon(tmp_path / f"ls{len(daemons)}", **config)
        daemons.append(daemon)
        return daemon

    yield start
    reset_host()
    for daemon in daemons:
        daemon.stop()


def test_once_level_zero_is_gone_a_bookmark_inside_a_compacted_range_is_refused(
    settings, tmp_path, daemon_factory
):
    daemon = daemon_factory(compaction=[1], l0_retention=1)
    replicate(settings, tmp_path, daemon)
    # The daemon compacts on whole seconds, which may split the three syncs over two
    # level-1 files; the test wants one range holding all three, and tries again.
    for attempt in range(5):
        stub = Archive.objects.get_by_name(f"compacted-{attempt}")
        _, second, third, moment = three_bookmarks(stub)
        # Level 1 takes the syncs; level 0 keeps only its newest file after that.
        wait_for(
            lambda stub=stub: (
                level_files(tmp_path, stub, 1) and len(level_files(tmp_path, stub, 0)) <= 1
            )
        )
        names = [path.name for path in level_files(tmp_path, stub, 1)]
        if names == ["0000000000000001-0000000000000003.ltx"]:
            break
    else:
        pytest.fail(f"the three syncs never shared one level-1 file: {names}")
    with pytest.raises(InvalidBookmark, match="holds no transaction"):
        restore_object(Archive, stub.id, bookmark=second)
    # A time inside the compacted range has no state either: the compacted file is
    # younger than the time.
    with pytest.raises(InvalidBookmark, match="holds no state from before"):
        restore_object(Archive, stub.id, when=moment)
    assert call(stub, "notes") == ["one", "two", "three"]  # untouched
    restore_object(Archive, stub.id, bookmark=third)  # a compacted range's end still is
    assert call(stub, "notes") == ["one", "two", "three"]


def test_with_the_retention_config_every_bookmark_survives_compaction(
    settings, tmp_path, daemon_factory
):
    daemon = daemon_factory(compaction=[1], retention=3600)
    replicate(settings, tmp_path, daemon)
    stub = Archive.objects.get_by_name("kept")
    first, second, _, moment = three_bookmarks(stub)
    wait_for(lambda: level_files(tmp_path, stub, 1))
    time.sleep(1.5)  # past the check interval of level 0's retention
    restore_object(Archive, stub.id, bookmark=second)
    assert call(stub, "notes") == ["one", "two"]
    restore_object(Archive, stub.id, when=moment)  # in generation 1, before the restore
    assert call(stub, "notes") == ["one"]
    restore_object(Archive, stub.id, bookmark=first)
    assert call(stub, "notes") == ["one"]


def test_daemon_config_sets_the_window_from_retention(tmp_path):
    text = daemon_config(tmp_path / "s.sock", retention=7200)
    assert "snapshot:\n  interval: 7200s\n  retention: 14400s\n" in text
    assert "l0-retention: 7200s\n" in text
    day = daemon_config(tmp_path / "s.sock", retention=30 * 86400)
    assert "  interval: 86400s\n  retention: 2678400s\n" in day
    assert "snapshot" not in daemon_config(tmp_path / "s.sock", retention=0)
