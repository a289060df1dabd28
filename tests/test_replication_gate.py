"""The output gate waits for the replica (issue 14), in one process on real parts.

A real host with ``REPLICATION`` on, a real ``litestream replicate`` daemon and SeaweedFS
(or a ``file://`` replica): an acknowledged write is in the replica (restored elsewhere
with ``litestream restore``), a batch shares one sync, the replica store down fails the
write retryably with nothing acknowledged, and a host refuses to start without its daemon.
"""

import asyncio
import sqlite3

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ImproperlyConfigured

from durable_objects.exceptions import ObjectReset
from durable_objects.runtime.calls import on_host_loop_sync
from durable_objects.runtime.lifecycle import get_host, reset_host
from durable_objects.runtime.replica import wait_background
from durable_objects.serialization import loads
from durable_objects.storage.files import shard_path
from durable_objects.storage.replication import restore
from durable_objects.testing.replication import LitestreamDaemon, SeaweedServer
from tests.support.objects import Counter

pytest_plugins = ["tests.support.replication"]


def replicate(settings, monkeypatch, replica, socket, durability="replicated", **extra):
    """Turn replication on for this test's host; credentials go to the environment."""
    for key, value in replica.environ.items():
        monkeypatch.setenv(key, value)
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "REPLICATION": {
            "REPLICA_URL": replica.prefix,
            "SOCKET": str(socket),
            "DURABILITY": durability,
            "SYNC_TIMEOUT": 10.0,
            **extra,
        },
    }
    reset_host()


def replica_value(tmp_path, stub, generation=1, name="restored"):
    """The counter's value in the replica of generation, restored into a new file."""
    replicator = get_host().replicator
    url = replicator.settings.shard_replica_url("tests.Counter", str(stub.id), generation)
    target = tmp_path / f"{name}.sqlite3"
    restore(target, url)
    conn = sqlite3.connect(target)
    try:
        row = conn.execute("SELECT value FROM _do_kv WHERE key = 'value'").fetchone()
    finally:
        conn.close()
    return loads(row[0])


def test_an_acknowledged_write_is_in_the_replica(
    settings, monkeypatch, replica, litestream_daemon, tmp_path
):
    replicate(settings, monkeypatch, replica, litestream_daemon.socket_path)
    stub = Counter.objects.get_by_name(f"gate-{replica.kind}")
    for _ in range(3):
        value = async_to_sync(stub.increment)()
    assert value == 3
    # Nothing waits for the daemon now: the acknowledgement said the replica has it.
    assert replica_value(tmp_path, stub) == 3


def test_a_batch_of_writes_shares_one_sync(settings, monkeypatch, replica, litestream_daemon):
    replicate(settings, monkeypatch, replica, litestream_daemon.socket_path)
    stub = Counter.objects.get_by_name(f"batch-{replica.kind}")

    async def burst():
        await stub.increment()  # registers the shard
        host = get_host()
        before = host.replicator.syncs
        values = await asyncio.gather(*(stub.increment() for _ in range(32)))
        return values, host.replicator.syncs - before

    values, syncs = async_to_sync(burst)()
    assert sorted(values) == list(range(2, 34))
    assert 1 <= syncs < 32


def test_local_durability_replicates_behind(
    settings, monkeypatch, replica, litestream_daemon, tmp_path, storage_root
):
    replicate(settings, monkeypatch, replica, litestream_daemon.socket_path, "local")
    stub = Counter.objects.get_by_name(f"behind-{replica.kind}")
    assert async_to_sync(stub.increment)() == 1
    host = get_host()
    on_host_loop_sync(host, wait_background, host.replicator, timeout=60)
    assert host.replicator.registered  # the shard was registered with the daemon
    async_to_sync(stub.increment)()
    path = shard_path(storage_root, "tests.Counter", str(stub.id))
    host.replicator.client.sync(path, wait=True)
    assert replica_value(tmp_path, stub) == 2


def test_the_replica_store_down_fails_writes_retryably_then_recovers(
    settings, monkeypatch, tmp_path
):
    store = SeaweedServer(tmp_path / "seaweed")
    daemon = LitestreamDaemon(tmp_path / "ls", env=store.env)
    try:
        from tests.support.replication import Replica

        replica = Replica("s3", store.url("down"), store.env)
        replicate(settings, monkeypatch, replica, daemon.socket_path)
        stub = Counter.objects.get_by_name("store-down")
        assert async_to_sync(stub.increment)() == 1
        store.stop()
        with pytest.raises(ObjectReset) as failure:
            async_to_sync(stub.increment)()
        assert failure.value.retryable
        assert "replica" in str(failure.value).lower()
        store.start()
        # Service is back once the store is: the instance was reset and starts again.
        value = None
        for _ in range(20):
            try:
                value = async_to_sync(stub.increment)()
                break
            except ObjectReset:
                continue
        assert value is not None and value >= 2
        assert replica_value(tmp_path, stub) == value
    finally:
        reset_host()
        daemon.stop()
        store.stop()


def test_a_host_refuses_to_start_without_its_daemon(settings, monkeypatch, tmp_path):
    from tests.support.replication import Replica

    replica = Replica("file", (tmp_path / "replicas").as_uri(), {})
    replicate(settings, monkeypatch, replica, tmp_path / "no-daemon.sock")
    stub = Counter.objects.get_by_name("no-daemon")
    with pytest.raises(ImproperlyConfigured, match="manage.py litestream"):
        async_to_sync(stub.increment)()


# -- system checks ---------------------------------------------------------------------


def test_e020_names_a_bad_replication_setting(settings):
    from durable_objects.checks import check_durable_objects

    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "REPLICATION": {"REPLICA_URL": "ftp://nowhere", "DURABILITY": "replicated"},
    }
    errors = [e for e in check_durable_objects() if e.id == "durable_objects.E020"]
    assert len(errors) == 1 and "ftp://nowhere" in errors[0].msg


def test_e021_names_a_missing_litestream_binary(settings, tmp_path):
    from durable_objects.checks import check_durable_objects

    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "REPLICATION": {
            "REPLICA_URL": (tmp_path / "r").as_uri(),
            "LITESTREAM_BIN": str(tmp_path / "no-litestream"),
        },
    }
    errors = [e for e in check_durable_objects() if e.id == "durable_objects.E021"]
    assert len(errors) == 1 and "no-litestream" in errors[0].msg


def test_e022_with_deploy_names_a_daemon_that_does_not_answer(settings, tmp_path):
    from django.core.checks import run_checks

    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "REPLICATION": {
            "REPLICA_URL": (tmp_path / "r").as_uri(),
            "SOCKET": str(tmp_path / "absent.sock"),
        },
    }
    assert "durable_objects.E022" not in [e.id for e in run_checks()]
    errors = [e for e in run_checks(include_deployment_checks=True) if e.id.endswith("E022")]
    assert len(errors) == 1 and "absent.sock" in errors[0].msg


def test_e022_is_quiet_when_the_daemon_answers(settings, tmp_path, litestream_daemon):
    from django.core.checks import run_checks

    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "REPLICATION": {
            "REPLICA_URL": (tmp_path / "r").as_uri(),
            "SOCKET": str(litestream_daemon.socket_path),
        },
    }
    ids = [e.id for e in run_checks(include_deployment_checks=True)]
    assert "durable_objects.E022" not in ids


def test_a_missing_bucket_fails_the_write_naming_it(
    settings, monkeypatch, seaweed, litestream_daemon
):
    from tests.support.replication import Replica

    url = seaweed.url("x").replace("s3://replicas/", "s3://no-such-bucket/")
    replica = Replica("s3", url, seaweed.env)
    replicate(settings, monkeypatch, replica, litestream_daemon.socket_path, SYNC_TIMEOUT=3.0)
    stub = Counter.objects.get_by_name("no-bucket")
    with pytest.raises(ObjectReset, match="NoSuchBucket") as failure:
        async_to_sync(stub.increment)()
    assert failure.value.retryable
    # Nothing was acknowledged, and the host serves on: the next try fails the same way.
    with pytest.raises(ObjectReset, match="NoSuchBucket"):
        async_to_sync(stub.increment)()
