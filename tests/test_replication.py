"""Replication foundation (issue 14) on real parts: Litestream 0.5 and SeaweedFS's S3 API.

A real shard (``storage.shard.Shard``, WAL) registered with a real ``litestream replicate``
daemon through its control socket, synced with wait, restored with ``litestream restore``;
both with a ``file://`` replica and with SeaweedFS over loopback. Bad input gets an error
that names the problem, within a bounded time.
"""

import os
import socket
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from urllib.parse import urlsplit

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from durable_objects.serialization import dumps, loads
from durable_objects.storage.replication import (
    DaemonUnreachable,
    DatabaseNotRegistered,
    LitestreamClient,
    LitestreamNotFound,
    NoReplica,
    ReplicaUnavailable,
    RestoreError,
    binaries,
    daemon_config,
    daemon_environment,
    litestream_binary,
    replication_settings,
    restore,
    shard_replica_url,
)
from durable_objects.storage.shard import Shard
from durable_objects.testing.replication import LitestreamDaemon
from durable_objects.testing.servers import free_port, stop_process
from tests.support.servers import REPO

pytest_plugins = ["tests.support.replication"]

LABEL = "tests.Replicated"
HEX_ID = "5e" + "0123456789abcdef" * 3 + "0123456789abcd"
BOUND = 60  # seconds: every operation here must end well within it, error or not


def bounded(fn, *args, seconds=BOUND, **kwargs):
    """Run fn in a thread; fail the test if it has not returned after seconds (a hang)."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(fn, *args, **kwargs)
        try:
            return future.result(seconds)
        except FutureTimeout:
            pytest.fail(f"{fn.__name__} did not return within {seconds} s")


def open_shard(path):
    """A real shard at path, its epoch claimed; (shard, epoch)."""
    shard = Shard(path)
    shard.open(label=LABEL, hex_id=HEX_ID, name="replicated")
    epoch = shard.claim_epoch()
    shard.touch()
    shard.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")
    shard.end_event(True)
    shard.commit(epoch)
    return shard, epoch


def write(shard, epoch, n):
    """One committed event: a key-value entry and a row of the user table."""
    shard.touch()
    shard.execute(
        "INSERT OR REPLACE INTO _do_kv(key, value) VALUES (?, ?)", (f"k{n}", dumps({"n": n}))
    )
    shard.execute("INSERT INTO notes(body) VALUES (?)", (f"note {n}",))
    shard.end_event(True)
    shard.commit(epoch)


def contents(path):
    """(key-value entries, notes, meta) of the SQLite file at path, read-only."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        kv = {key: loads(value) for key, value in conn.execute("SELECT key, value FROM _do_kv")}
        notes = [body for (body,) in conn.execute("SELECT body FROM notes ORDER BY id")]
        meta = dict(conn.execute("SELECT key, value FROM _do_meta WHERE key != 'created_at'"))
        return kv, notes, meta
    finally:
        conn.close()


def environ(replica):
    return {**os.environ, **replica.environ}


@pytest.fixture
def shard(tmp_path):
    shard, epoch = open_shard(tmp_path / "machine-a" / f"{HEX_ID}.sqlite3")
    yield shard, epoch
    shard.close()


@pytest.fixture
def registered(shard, replica, litestream_daemon):
    """The shard registered with the daemon under epoch 1's replica URL."""
    shard, epoch = shard
    url = shard_replica_url(replica.prefix, LABEL, HEX_ID, epoch)
    client = litestream_daemon.client
    assert client.register(shard.path, url) == "registered"
    yield shard, epoch, url, client
    client.unregister(shard.path)


# -- sync and restore ---------------------------------------------------------------------


def test_sync_with_wait_returns_a_replica_txid_at_or_past_the_txid(registered):
    shard, epoch, _url, client = registered
    write(shard, epoch, 1)
    first = bounded(client.sync, shard.path, wait=True)
    assert first.status in ("synced", "no_change")
    assert first.txid >= 1
    assert first.replica_txid >= first.txid
    assert first.replicated

    write(shard, epoch, 2)
    second = bounded(client.sync, shard.path, wait=True)
    assert second.txid > first.txid
    assert second.replica_txid >= second.txid
    assert client.txid(shard.path) == second.txid
    assert str(shard.path) in [db["path"] for db in client.list()]


def test_register_twice_keeps_the_first_registration(registered):
    shard, _epoch, url, client = registered
    assert client.register(shard.path, url) == "already_registered"


def test_restore_yields_the_same_rows(registered, tmp_path, replica):
    shard, epoch, url, client = registered
    for n in range(1, 4):
        write(shard, epoch, n)
    synced = bounded(client.sync, shard.path, wait=True)

    target = tmp_path / "machine-b" / f"{HEX_ID}.sqlite3"
    result = bounded(restore, target, url, environ=environ(replica))

    assert result.path == target
    assert result.txid == synced.replica_txid
    assert contents(target) == contents(shard.path)
    kv, notes, meta = contents(target)
    assert kv == {"k1": {"n": 1}, "k2": {"n": 2}, "k3": {"n": 3}}
    assert notes == ["note 1", "note 2", "note 3"]
    assert meta["id"] == HEX_ID and meta["epoch"] == epoch
    # The restored file is a shard the runtime can open as it is (WAL, schema, meta).
    reopened = Shard(target)
    assert reopened.open(label=LABEL, hex_id=HEX_ID, name="replicated") is False
    assert reopened.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened.close()


def test_restore_to_a_txid_between_two_writes_yields_the_earlier_state(
    registered, tmp_path, replica
):
    shard, epoch, url, client = registered
    write(shard, epoch, 1)
    earlier = bounded(client.sync, shard.path, wait=True)
    write(shard, epoch, 2)
    later = bounded(client.sync, shard.path, wait=True)
    assert later.txid > earlier.txid

    target = tmp_path / "earlier.sqlite3"
    result = bounded(restore, target, url, txid=earlier.txid, environ=environ(replica))

    assert result.txid == earlier.txid
    kv, notes, _meta = contents(target)
    assert kv == {"k1": {"n": 1}}
    assert notes == ["note 1"]


def test_replicas_go_to_a_path_per_shard_and_epoch(registered, replica, seaweed):
    shard, epoch, url, client = registered
    write(shard, epoch, 1)
    bounded(client.sync, shard.path, wait=True)
    tail = f"{LABEL}/{HEX_ID[:2]}/{HEX_ID}/{epoch}"
    assert urlsplit(url).path.endswith("/" + tail)
    if replica.kind == "file":
        directory = urlsplit(url).path
        assert any(name.endswith(".ltx") for _, _, names in os.walk(directory) for name in names)
    else:
        prefix = urlsplit(replica.prefix).path.strip("/")
        keys = seaweed.list_keys(f"{prefix}/{tail}/")
        assert keys and all(key.endswith(b".ltx") for key in keys)


def test_a_new_epoch_replicates_to_a_path_of_its_own(registered, replica, tmp_path):
    shard, epoch, url, client = registered
    write(shard, epoch, 1)
    bounded(client.sync, shard.path, wait=True)
    client.unregister(shard.path)

    next_epoch = shard.claim_epoch()
    next_url = shard_replica_url(replica.prefix, LABEL, HEX_ID, next_epoch)
    assert client.register(shard.path, next_url) == "registered"
    write(shard, next_epoch, 2)
    bounded(client.sync, shard.path, wait=True)

    old = bounded(restore, tmp_path / "old.sqlite3", url, environ=environ(replica))
    new = bounded(restore, tmp_path / "new.sqlite3", next_url, environ=environ(replica))
    assert contents(old.path)[1] == ["note 1"]
    assert contents(new.path)[1] == ["note 1", "note 2"]
    assert contents(new.path)[2]["epoch"] == next_epoch


def test_sync_of_an_unregistered_database_names_it(shard, litestream_daemon):
    shard, _epoch = shard
    with pytest.raises(DatabaseNotRegistered, match="does not replicate .*register it first"):
        bounded(litestream_daemon.client.sync, shard.path)


def test_restore_refuses_an_existing_path_unless_overwrite(registered, tmp_path, replica):
    shard, epoch, url, client = registered
    write(shard, epoch, 1)
    bounded(client.sync, shard.path, wait=True)
    target = tmp_path / "existing.sqlite3"
    target.write_bytes(b"keep me")
    with pytest.raises(RestoreError, match="it exists"):
        restore(target, url, environ=environ(replica))
    assert target.read_bytes() == b"keep me"
    bounded(restore, target, url, overwrite=True, environ=environ(replica))
    assert contents(target)[1] == ["note 1"]


def test_restore_refuses_the_replica_of_another_object(registered, tmp_path, replica):
    shard, epoch, url, client = registered
    write(shard, epoch, 1)
    bounded(client.sync, shard.path, wait=True)
    target = tmp_path / "other.sqlite3"
    other = "ff" * 32
    with pytest.raises(RestoreError, match=f"not the shard of {LABEL} {other}.*Refused"):
        bounded(restore, target, url, shard=(LABEL, other), environ=environ(replica))
    assert not target.exists()
    restored = bounded(restore, target, url, shard=(LABEL, HEX_ID), environ=environ(replica))
    assert contents(restored.path)[1] == ["note 1"]


@pytest.mark.parametrize("replica", ["file"], indirect=True)
def test_restore_refuses_a_corrupt_replica(registered, tmp_path):
    shard, epoch, url, client = registered
    write(shard, epoch, 1)
    bounded(client.sync, shard.path, wait=True)
    directory = urlsplit(url).path
    files = [os.path.join(d, n) for d, _, names in os.walk(directory) for n in names]
    for name in files:
        if name.endswith(".ltx"):
            with open(name, "r+b") as ltx:
                ltx.seek(os.path.getsize(name) // 2)
                byte = ltx.read(1)
                ltx.seek(-1, os.SEEK_CUR)
                ltx.write(bytes([byte[0] ^ 0xFF]))
    target = tmp_path / "corrupt.sqlite3"
    # Where the flipped byte lands decides which check finds it first: the LTX checksum,
    # or the decompression of a page.
    with pytest.raises(RestoreError, match="failed: .*(checksum mismatch|decompress|decode)"):
        bounded(restore, target, url, environ=os.environ)
    assert not target.exists()


def test_restore_from_an_empty_replica_is_no_replica(tmp_path, replica):
    url = shard_replica_url(replica.prefix, LABEL, HEX_ID, 7)
    target = tmp_path / "never.sqlite3"
    with pytest.raises(NoReplica, match="holds nothing to restore"):
        bounded(restore, target, url, environ=environ(replica))
    assert not target.exists()
    assert os.listdir(tmp_path) in ([], ["replicas"])  # no partial file left behind


# -- bad input: binary, socket, bucket, credentials ---------------------------------------


def test_a_litestream_bin_that_is_not_there_is_named(tmp_path):
    missing = str(tmp_path / "no-litestream")
    with pytest.raises(LitestreamNotFound, match="LITESTREAM_BIN.*no-litestream.*not an exec"):
        litestream_binary(missing)


def test_restore_with_a_missing_binary_is_a_clear_error(settings, tmp_path):
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "REPLICATION": {
            "REPLICA_URL": (tmp_path / "r").as_uri(),
            "LITESTREAM_BIN": str(tmp_path / "gone"),
        },
    }
    with pytest.raises(LitestreamNotFound, match="gone"):
        restore(tmp_path / "x.sqlite3", (tmp_path / "r").as_uri())


def test_no_binary_anywhere_says_how_to_install_one(monkeypatch):
    monkeypatch.setattr(binaries, "PACKAGE", "no-such-package-durable-objects")
    monkeypatch.setenv("PATH", "")
    with pytest.raises(LitestreamNotFound, match=r"durable-objects\[replication\]"):
        litestream_binary()


def test_the_binary_comes_from_the_setting_then_the_package(tmp_path):
    packaged = binaries.package_binary()
    assert packaged is not None and packaged.endswith("litestream")
    assert litestream_binary() == packaged
    assert litestream_binary(packaged) == packaged


def test_a_socket_that_is_not_there(tmp_path):
    client = LitestreamClient(tmp_path / "none.sock")
    with pytest.raises(
        DaemonUnreachable, match=r"none\.sock does not exist.*manage.py litestream"
    ):
        bounded(client.info)


def test_a_stale_socket_file_refuses(tmp_path):
    path = tmp_path / "stale.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.close()  # the file stays, nobody listens
    with pytest.raises(DaemonUnreachable, match="refuses connections"):
        bounded(LitestreamClient(path).sync, tmp_path / "db.sqlite3")


def test_a_daemon_that_never_answers_times_out(tmp_path):
    path = tmp_path / "mute.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)  # accepts into the backlog, never reads
    try:
        client = LitestreamClient(path, timeout=1)
        with pytest.raises(DaemonUnreachable, match="did not answer GET /info within 1 s"):
            bounded(client.info)
    finally:
        listener.close()


def test_a_missing_bucket_is_named(shard, seaweed, litestream_daemon, tmp_path):
    shard, epoch = shard
    url = shard_replica_url(
        seaweed.url("x").replace("s3://replicas/", "s3://no-such-bucket/"), LABEL, HEX_ID, epoch
    )
    client = litestream_daemon.client
    client.register(shard.path, url)
    try:
        write(shard, epoch, 1)
        with pytest.raises(ReplicaUnavailable, match="NoSuchBucket.*the bucket does not exist"):
            bounded(client.sync, shard.path, timeout=3)
    finally:
        client.unregister(shard.path)
    with pytest.raises(RestoreError, match="NoSuchBucket.*Hint: the bucket does not exist"):
        bounded(restore, tmp_path / "r.sqlite3", url, environ={**os.environ, **seaweed.env})


def test_wrong_credentials_are_named(shard, seaweed, tmp_path):
    shard, epoch = shard
    wrong = {**seaweed.env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    daemon = LitestreamDaemon(tmp_path / "wrong", env=wrong)
    try:
        url = shard_replica_url(seaweed.url("wrong"), LABEL, HEX_ID, epoch)
        daemon.client.register(shard.path, url)
        write(shard, epoch, 1)
        with pytest.raises(ReplicaUnavailable, match="SignatureDoesNotMatch.*AWS_SECRET_ACCESS"):
            bounded(daemon.client.sync, shard.path, timeout=3)
    finally:
        daemon.stop()
    with pytest.raises(RestoreError, match="SignatureDoesNotMatch"):
        bounded(restore, tmp_path / "r.sqlite3", url, environ={**os.environ, **wrong})


def test_a_replica_store_that_is_not_there_fails_the_sync_in_time(shard, litestream_daemon):
    shard, epoch = shard
    url = f"s3://replicas/down?endpoint=http://127.0.0.1:{free_port()}&region=us-east-1"
    client = litestream_daemon.client
    client.register(shard.path, shard_replica_url(url, LABEL, HEX_ID, epoch))
    try:
        write(shard, epoch, 1)
        with pytest.raises(ReplicaUnavailable, match="did not take its changes"):
            bounded(client.sync, shard.path, timeout=2)
    finally:
        client.unregister(shard.path, timeout=2)


def test_aws_ca_bundle_is_kept_from_the_daemon(shard, seaweed, tmp_path):
    shard, epoch = shard
    # With AWS_CA_BUNDLE set, Litestream's S3 client fails ("unable to add custom RootCAs").
    env = {**seaweed.env, "AWS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}
    daemon = LitestreamDaemon(tmp_path / "bundle", env=env)
    try:
        assert "AWS_CA_BUNDLE" not in daemon.env
        url = shard_replica_url(seaweed.url("bundle"), LABEL, HEX_ID, epoch)
        daemon.client.register(shard.path, url)
        write(shard, epoch, 1)
        assert bounded(daemon.client.sync, shard.path, timeout=5).replicated
    finally:
        daemon.stop()


def test_daemon_environment_moves_a_ca_bundle_to_ssl_cert_file():
    env = daemon_environment({"AWS_CA_BUNDLE": "/ca.pem", "AWS_ACCESS_KEY_ID": "k"})
    assert env == {"SSL_CERT_FILE": "/ca.pem", "AWS_ACCESS_KEY_ID": "k"}
    env = daemon_environment({"AWS_CA_BUNDLE": "/ca.pem", "SSL_CERT_FILE": "/mine.pem"})
    assert env == {"SSL_CERT_FILE": "/mine.pem"}


def test_register_refuses_a_url_litestream_cannot_use(tmp_path):
    client = LitestreamClient(tmp_path / "unused.sock")
    with pytest.raises(ValueError, match="scheme must be one of"):
        client.register(tmp_path / "db", "http://example.invalid/x")


# -- settings -----------------------------------------------------------------------------


def replication(settings, **values):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "REPLICATION": values}
    return replication_settings()


def test_replication_is_off_by_default():
    assert replication_settings() is None


def test_replication_defaults(settings, storage_root):
    got = replication(settings, REPLICA_URL="s3://bucket/prefix?endpoint=http://h:1")
    assert got.replica_url == "s3://bucket/prefix?endpoint=http://h:1"
    assert got.socket == storage_root.resolve() / "litestream.sock"
    assert got.config_path == storage_root.resolve() / "litestream.yml"
    assert got.durability == "local" and not got.replicated
    assert got.sync_timeout == 5.0
    assert got.shard_replica_url(LABEL, HEX_ID, 3) == (
        f"s3://bucket/prefix/{LABEL}/{HEX_ID[:2]}/{HEX_ID}/3?endpoint=http://h:1"
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, r"REPLICA_URL'\] is required"),
        ({"REPLICA_URL": "http://bucket/x"}, "scheme must be one of"),
        ({"REPLICA_URL": "s3:///x"}, "needs a bucket"),
        ({"REPLICA_URL": "file://host/x"}, "absolute path"),
        ({"REPLICA_URL": "file:///r", "DURABILITY": "fsync"}, "DURABILITY.*'fsync'"),
        ({"REPLICA_URL": "file:///r", "SYNC_TIMEOUT": 0}, "SYNC_TIMEOUT.*positive"),
        ({"REPLICA_URL": "file:///r", "SYNC_TIMEOUT": True}, "SYNC_TIMEOUT.*positive"),
        ({"REPLICA_URL": "file:///r", "LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"REPLICA_URL": "file:///r", "REPLICA": "x"}, "Unknown key.*REPLICA\\b"),
    ],
)
def test_bad_replication_settings_are_named(settings, values, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        replication(settings, **values)


def test_replication_must_be_a_dict(settings):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "REPLICATION": "s3://b"}
    with pytest.raises(ImproperlyConfigured, match="must be a dict or None"):
        replication_settings()


@pytest.mark.parametrize(
    ("label", "hex_id", "epoch"),
    [("nodot", HEX_ID, 1), (LABEL, "ABC", 1), (LABEL, HEX_ID, -1), (LABEL, HEX_ID, True)],
)
def test_shard_replica_url_refuses_bad_parts(label, hex_id, epoch):
    with pytest.raises(ValueError):
        shard_replica_url("file:///r", label, hex_id, epoch)


def test_daemon_config_enables_the_socket_with_no_databases(tmp_path):
    text = daemon_config(tmp_path / "s.sock", log_level="warn")
    assert f'  path: "{tmp_path / "s.sock"}"' in text
    assert "  enabled: true" in text and "dbs: []" in text and '  level: "warn"' in text


# -- manage.py litestream -----------------------------------------------------------------


def test_command_refuses_when_replication_is_off():
    with pytest.raises(CommandError, match="Replication is off"):
        call_command("litestream", "--print-config")


def test_command_prints_and_writes_the_config(settings, tmp_path, capsys):
    replication(settings, REPLICA_URL="file:///r", SOCKET=str(tmp_path / "ls.sock"))
    call_command("litestream", "--print-config")
    printed = capsys.readouterr().out
    assert printed == daemon_config(tmp_path / "ls.sock", retention=24 * 3600)
    call_command("litestream", "--config-only")
    written = replication_settings().config_path
    assert written.read_text() == printed
    assert "replicate -config" in capsys.readouterr().out


def test_command_refuses_a_second_daemon(settings, litestream_daemon):
    replication(settings, REPLICA_URL="file:///r", SOCKET=str(litestream_daemon.socket_path))
    with pytest.raises(CommandError, match=r"already listens on .*One daemon per machine"):
        call_command("litestream", "--config-only")


def test_command_names_a_missing_binary(settings, tmp_path):
    replication(settings, REPLICA_URL="file:///r", LITESTREAM_BIN=str(tmp_path / "nope"))
    with pytest.raises(CommandError, match="nope"):
        call_command("litestream", "--config-only")


def test_command_runs_the_daemon(tmp_path):
    """``manage.py litestream`` becomes the daemon (exec): it answers on the socket."""
    socket_path = tmp_path / "run" / "ls.sock"
    (tmp_path / "replication_settings.py").write_text(
        "from tests.support.settings import *  # noqa\n"
        f"DURABLE_OBJECTS = {{**DURABLE_OBJECTS, 'STORAGE_ROOT': {str(tmp_path / 'root')!r},\n"
        f"    'REPLICATION': {{'REPLICA_URL': {(tmp_path / 'r').as_uri()!r},\n"
        f"                    'SOCKET': {str(socket_path)!r}}}}}\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
        "DJANGO_SETTINGS_MODULE": "replication_settings",
    }
    process = subprocess.Popen(
        [sys.executable, str(REPO / "manage.py"), "litestream"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = []
    reader = threading.Thread(target=lambda: output.append(process.stdout.read()), daemon=True)
    reader.start()
    try:
        info = LitestreamClient(socket_path).wait_ready(30, process=process)
        assert info["pid"] == process.pid  # the command replaced itself with the daemon
        assert (tmp_path / "root" / "litestream.yml").exists()
    finally:
        stop_process(process, grace=5)
        reader.join(5)
    assert b"Starting Litestream" in b"".join(output)


def test_delete_replica_removes_one_generation_only(registered, replica, tmp_path):
    from durable_objects.storage.replication import delete_replica

    shard, epoch, url, client = registered
    write(shard, epoch, 1)
    bounded(client.sync, shard.path, wait=True)
    other_url = shard_replica_url(replica.prefix, LABEL, HEX_ID, epoch + 1)
    assert delete_replica(other_url, environ=environ(replica)) == 0  # nothing there
    assert delete_replica(url, environ=environ(replica)) > 0
    with pytest.raises(NoReplica):
        restore(tmp_path / "copy.sqlite3", url, environ=environ(replica))
