"""The machines rig itself: namespaces, links, processes and teardown (real processes)."""

import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from durable_objects.testing import network as network_module
from durable_objects.testing.machines import MAX_MACHINES
from durable_objects.testing.network import NamespaceNetwork, new_rig_id, sweep_stale_rigs

pytest_plugins = ["tests.support.machines"]


def get_json(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def answers(url, timeout=1.0):
    """True if an HTTP server answers at url within timeout seconds."""
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def wait_until(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


REACH = """
import sys, urllib.request, urllib.error, redis
redis.Redis.from_url(sys.argv[1], socket_timeout=2, socket_connect_timeout=2).ping()
try:
    urllib.request.urlopen(sys.argv[2], timeout=2)
except urllib.error.HTTPError as error:
    print("s3", error.code)
else:
    print("s3", 200)
"""


def ip_names(*arguments):
    return subprocess.run(["ip", *arguments], capture_output=True, text=True).stdout


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is not a live process
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_every_machine_reaches_redis_and_seaweedfs(rig, machines):
    started = machines(2)
    for machine in started:
        result = machine.run([sys.executable, "-c", REACH, rig.redis_url, rig.seaweed.endpoint])
        assert result.returncode == 0, result.stderr
        assert result.stdout.split()[0] == "s3"
        # The machine's own Litestream daemon reaches SeaweedFS: a database it is given
        # is in the bucket once a sync returns.
        from durable_objects.storage.replication import LitestreamClient

        database = machine.storage_root / "probe.sqlite3"
        subprocess.run(
            [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
             "c.execute('PRAGMA journal_mode=WAL'); c.execute('CREATE TABLE t(x)'); "
             "c.execute('INSERT INTO t VALUES (1)'); c.commit()", str(database)],
            check=True,
        )  # fmt: skip
        client = LitestreamClient(machine.litestream_socket, timeout=15)
        prefix = f"probe-{rig.id}-{machine.name}"
        replica = rig.seaweed.url(prefix)
        try:
            assert client.register(database, replica) in ("registered", "already_registered")
            result = client.sync(database, wait=True, timeout=15)
        finally:
            client.close()
        assert result.replica_txid >= 1
        assert rig.seaweed.list_keys(prefix + "/")


def test_a_call_on_one_machine_reaches_an_object_held_on_another(rig, machines):
    first, second = machines(2)
    held = get_json(f"{second.url}/tally/across/increment/")
    assert held == {"value": 1, "pid": second.pid("daphne")}
    routed = get_json(f"{first.url}/tally/across/increment/")
    assert routed == {"value": 2, "pid": second.pid("daphne")}  # run on the holder
    assert rig.machine_with_pid(routed["pid"]) is second
    assert first.pid("daphne") != second.pid("daphne")
    assert first.storage_root != second.storage_root
    assert list(second.storage_root.rglob("*.sqlite3"))
    assert not list(first.storage_root.rglob("*.sqlite3"))  # the shard is on second's disk


def test_link_down_makes_a_machine_unreachable_and_link_up_restores_it(namespaces, rig, machines):
    first, second = machines(2)
    assert answers(f"{second.url}/tally/link/")
    second.link_down()
    try:
        assert not answers(f"{second.url}/tally/link/")
        reach = second.run([sys.executable, "-c", REACH, rig.redis_url, rig.seaweed.endpoint])
        assert reach.returncode != 0  # and second reaches neither Redis nor SeaweedFS
        assert answers(f"{first.url}/tally/link/")  # the others are still on the network
    finally:
        second.link_up()
    assert wait_until(lambda: answers(f"{second.url}/tally/link/"))
    reach = second.run([sys.executable, "-c", REACH, rig.redis_url, rig.seaweed.endpoint])
    assert reach.returncode == 0, reach.stderr


def test_kill_leaves_no_process_of_the_machine(machines):
    first, second = machines(2)
    get_json(f"{second.url}/tally/killed/increment/")
    pids = second.pids()
    roles = {"daphne", "runobjects", "litestream"}
    assert roles <= set(second.processes)
    assert {second.pid(role) for role in roles} <= set(pids)
    second.kill()
    assert second.pids() == []
    assert not any(alive(pid) for pid in pids)
    assert not second.running
    assert not answers(f"{second.url}/tally/killed/")
    assert answers(f"{first.url}/tally/other/")  # the other machine is untouched


def test_pause_stops_every_process_and_resume_lets_them_run(machines):
    (machine,) = machines(1)
    machine.pause()
    try:
        states = {pid: _state(pid) for pid in machine.pids()}
        assert states and set(states.values()) == {"T"}, states
        assert not answers(f"{machine.url}/tally/paused/", timeout=1)
    finally:
        machine.resume()
    assert "T" not in {_state(pid) for pid in machine.pids()}
    assert get_json(f"{machine.url}/tally/paused/increment/")["value"] == 1


def test_wipe_deletes_the_disk_and_restart_starts_on_an_empty_one(machines):
    (machine,) = machines(1)
    assert get_json(f"{machine.url}/tally/wiped/increment/")["value"] == 1
    with pytest.raises(RuntimeError, match="m1 is running: kill\\(\\) it before wipe\\(\\)"):
        machine.wipe()
    machine.kill()
    machine.wipe()
    assert not machine.directory.exists()
    old = machine.pid("daphne")
    machine.start()
    assert machine.pid("daphne") != old
    assert machine.database.exists() and machine.storage_root.is_dir()
    assert answers(f"{machine.url}/tally/wiped/")


def test_restart_starts_new_processes_and_returns_once_they_serve(rig, machines):
    import redis

    from durable_objects.placement.leases import HOSTS, host_key

    (machine,) = machines(1)
    before = {role: machine.pid(role) for role in machine.processes}
    machine.restart()
    after = {role: machine.pid(role) for role in machine.processes}
    assert set(after) == set(before) and not set(after.values()) & set(before.values())
    assert not any(alive(pid) for pid in before.values())
    # The new runobjects has joined the cluster by the time restart() returns.
    client = redis.Redis.from_url(rig.redis_url)
    beats = [client.get(host_key(token.decode())) for token in client.zrange(HOSTS, 0, -1)]
    assert after["runobjects"] in {json.loads(beat)["pid"] for beat in beats if beat}


def test_teardown_leaves_no_namespace_link_process_or_directory(rig_factory):
    rig = rig_factory(machines=1, replication=False)
    with pytest.raises(RuntimeError, match="a test that fails"), rig:
        (machine,) = rig.machines
        pids = machine.pids()
        assert pids
        names = []
        if rig.network.kind == "netns":
            names = [rig.network.namespace(1), rig.network.host_link(1), rig.network.bridge]
            assert rig.network.namespace(1) in ip_names("netns", "list")
            assert rig.network.bridge in ip_names("link")
        raise RuntimeError("a test that fails inside the rig")
    assert not any(alive(pid) for pid in pids)
    assert not any(name in ip_names("netns", "list") for name in names)
    assert not any(name in ip_names("link") for name in names)
    assert not rig.directory.exists()
    assert rig.redis.process.poll() is not None


def test_what_a_dead_rig_left_is_swept_by_the_next(namespaces):
    network = NamespaceNetwork(new_rig_id())
    try:
        network.add_machine(1)
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout  # fmt: skip
        manifest = network_module._manifest_path(network.rig_id)
        manifest.write_text(manifest.read_text().replace(str(os.getpid()), dead.strip()))
        assert network.rig_id in sweep_stale_rigs()
        assert network.namespace(1) not in ip_names("netns", "list")
        assert network.bridge not in ip_names("link")
        assert not manifest.exists()
    finally:
        network.close()


def test_a_rig_runs_a_bounded_number_of_machines(rig):
    with pytest.raises(ValueError, match=f"at most {MAX_MACHINES} machines; it has 0 and "):
        rig.add_machines(MAX_MACHINES + 1)
    assert rig.machines == []


def test_without_namespaces_machines_are_loopback_addresses_and_say_so(rig_factory, caplog):
    caplog.set_level(logging.WARNING, "durable_objects.testing.machines")
    with rig_factory(machines=1, replication=False, namespaces=False) as rig:
        (machine,) = rig.machines
        assert machine.address == "127.0.0.11"
        assert get_json(f"{machine.url}/tally/loop/increment/")["value"] == 1
        with pytest.raises(NotImplementedError, match="link_down\\(\\) needs network"):
            machine.link_down()
        machine.kill()
        assert machine.pids() == []
    assert "loopback address 127.0.0.x" in caplog.text


def _state(pid):
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]
