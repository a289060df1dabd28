"""New shards: the template file copied in one write, durable before its first commit."""

import sqlite3
import subprocess
import sys

import pytest

from durable_objects.exceptions import FencedError
from durable_objects.storage import files
from durable_objects.storage.files import create_file, shard_files
from durable_objects.storage.schema import SCHEMA_VERSION, template
from durable_objects.storage.shard import Shard, shard_path, wal_syncs_directory
from tests.support.servers import REPO

LABEL = "tests.Fresh"
HEX_ID = "ab" * 32


def test_a_new_shard_is_the_template_with_its_own_meta(tmp_path):
    path = shard_path(tmp_path, LABEL, HEX_ID)
    shard = Shard(path)
    assert shard.open(label=LABEL, hex_id=HEX_ID, name="fresh") is True
    epoch = shard.claim_epoch()
    meta = shard.all_meta()
    shard.close()
    assert (meta["label"], meta["id"], meta["name"], meta["epoch"]) == (LABEL, HEX_ID, "fresh", 1)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"_do_meta", "_do_kv", "_do_sockets", "_do_alarm"} <= tables
    conn.close()
    assert epoch == 1
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left
    assert [found.hex_id for found in shard_files(tmp_path)] == [HEX_ID]


def test_create_file_never_replaces_a_file(tmp_path):
    path = tmp_path / "a" / "b" / "shard.sqlite3"
    assert create_file(path, b"first") is True
    assert create_file(path, b"second") is False
    assert path.read_bytes() == b"first"
    assert sorted(p.name for p in path.parent.iterdir()) == ["shard.sqlite3"]


def test_a_shard_whose_meta_a_crash_lost_gets_it_at_the_next_open(tmp_path):
    """The template on disk without its rows: what a crash before the first commit leaves."""
    path = shard_path(tmp_path, LABEL, HEX_ID)
    assert create_file(path, template())
    shard = Shard(path)
    assert shard.open(label=LABEL, hex_id=HEX_ID, name="fresh") is False
    assert shard.claim_epoch() == 1
    assert shard.all_meta()["name"] == "fresh"
    shard.close()


WRITER = """
import os, sys
from pathlib import Path
from durable_objects.storage.shard import Shard
shard = Shard(Path(sys.argv[1]))
shard.open(label="tests.Fresh", hex_id="ab" * 32, name="fresh")
epoch = shard.claim_epoch()
shard.touch()
shard.execute("INSERT INTO main._do_kv(key, value) VALUES ('k', x'2a')")
shard.end_event(True)
shard.commit(epoch)
print("acknowledged", flush=True)
os._exit(0)  # no close, no checkpoint: only what the commit made durable is there
"""


def test_the_first_acknowledged_write_of_a_new_shard_survives_its_process(tmp_path):
    path = shard_path(tmp_path, LABEL, HEX_ID)
    result = subprocess.run(
        [sys.executable, "-c", WRITER, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "acknowledged"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    assert conn.execute("SELECT value FROM _do_kv WHERE key = 'k'").fetchone() == (b"*",)
    assert dict(conn.execute("SELECT key, value FROM _do_meta"))["id"] == HEX_ID
    conn.close()


def test_an_empty_file_at_a_shards_path_is_made_a_shard(tmp_path):
    """What an interrupted creation by SQLite itself may leave: an empty file."""
    path = shard_path(tmp_path, LABEL, HEX_ID)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    shard = Shard(path)
    assert shard.open(label=LABEL, hex_id=HEX_ID, name="fresh") is False
    assert shard.claim_epoch() == 1
    assert shard.all_meta()["id"] == HEX_ID
    shard.close()


def test_a_new_shards_epoch_is_claimed_with_its_meta_and_bumped_by_each_open(tmp_path):
    path = shard_path(tmp_path, LABEL, HEX_ID)
    shard = Shard(path)
    assert shard.open_and_claim(label=LABEL, hex_id=HEX_ID, name="fresh") == (True, 1)
    assert shard.written_meta == shard.all_meta()  # what the runtime takes as read
    shard.touch()
    shard.execute("INSERT INTO main._do_kv(key, value) VALUES ('k', x'2a')")
    shard.end_event(True)
    shard.commit(1)
    meta = shard.all_meta()
    shard.close()
    assert (meta["label"], meta["id"], meta["name"], meta["epoch"]) == (LABEL, HEX_ID, "fresh", 1)
    again = Shard(path)
    assert again.open_and_claim(label=LABEL, hex_id=HEX_ID, name="fresh") == (False, 2)
    assert again.written_meta is None
    assert again.execute("SELECT value FROM main._do_kv WHERE key = 'k'").fetchone() == (b"*",)
    assert again.all_meta()["created_at"] == meta["created_at"]
    again.close()


def test_a_shard_opened_while_another_claims_it_is_fenced_not_shared(tmp_path):
    """Two openers of one new shard never hold the same epoch."""
    path = shard_path(tmp_path, LABEL, HEX_ID)
    first, second = Shard(path), Shard(path)
    created, first_epoch = first.open_and_claim(label=LABEL, hex_id=HEX_ID, name=None)
    assert created and first_epoch == 1
    assert second.open_and_claim(label=LABEL, hex_id=HEX_ID, name=None) == (False, 2)
    assert second.written_meta is None  # the rows were the first opener's
    first.touch()
    first.execute("INSERT INTO main._do_kv(key, value) VALUES ('k', x'2a')")
    first.end_event(True)
    with pytest.raises(FencedError, match="epoch is 2"):
        first.commit(first_epoch)
    first.close()
    second.close()


def test_a_new_shards_directory_is_synced_by_its_first_commit_not_twice(tmp_path, monkeypatch):
    """At FULL, SQLite syncs the directory with the new WAL's first sync; at NORMAL no
    commit is synced, so the file's name is synced when the file is made."""
    synced = []
    monkeypatch.setattr(files, "fsync_directory", synced.append)
    (tmp_path / "tests" / "Fresh" / HEX_ID[:2]).mkdir(parents=True)
    for synchronous, other_id in (("FULL", "ab" * 31 + "01"), ("NORMAL", "ab" * 31 + "02")):
        synced.clear()
        path = shard_path(tmp_path, LABEL, other_id)
        shard = Shard(path, synchronous=synchronous)
        assert shard.open_and_claim(label=LABEL, hex_id=other_id, name=None) == (True, 1)
        shard.close()
        assert synced == ([] if wal_syncs_directory(synchronous) else [path.parent])
    assert wal_syncs_directory("NORMAL") is False


def test_create_file_syncs_the_parents_of_the_directories_it_made(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(files, "fsync_directory", synced.append)
    path = tmp_path / "a" / "b" / "shard.sqlite3"
    assert create_file(path, b"data", sync_directory=False) is True
    assert synced == [tmp_path / "a", tmp_path]
    synced.clear()
    assert create_file(path.with_name("other.sqlite3"), b"data", sync_directory=False)
    assert synced == []
    assert create_file(path.with_name("third.sqlite3"), b"data") is True
    assert synced == [path.parent]
