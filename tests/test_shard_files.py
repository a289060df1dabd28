"""New shards: the template file copied in one write, durable before its first commit."""

import sqlite3
import subprocess
import sys

from durable_objects.storage.files import create_file, shard_files
from durable_objects.storage.shard import SCHEMA_VERSION, Shard, shard_path, template
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
