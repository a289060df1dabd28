"""Fixtures of the multi-machine tests: a rig of machines (durable_objects/testing/machines.py).

Use with ``pytest_plugins = ["tests.support.machines"]``. ``rig`` (one per session) runs
Redis and SeaweedFS on the rig's bridge; ``machines(n)`` starts n machines of the test's
own, each a network namespace with its own storage root, database and Litestream daemon
running the test settings (tests.support.cluster_settings) and the cluster tests' views
(/tally/<name>/...). They are removed, and Redis emptied, when the test ends.
``namespaces`` skips a test where ``ip netns`` is impossible (the rig then runs on
loopback addresses, without partitions); ``rig_factory`` makes a rig of a test's own.
"""

import pytest

from durable_objects.testing.machines import Rig
from durable_objects.testing.network import netns_unavailable_reason
from tests.support.servers import REPO


@pytest.fixture(scope="session")
def namespaces():
    """Skip the test unless network namespaces can be made here (partitions need them).

    CI runs as root, where they can: there these tests run.
    """
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(f"ip netns is impossible here: {reason}")


def machine_environment(machine):
    """The variables tests.support.cluster_settings reads, for one machine."""
    rig = machine.rig
    env = {
        "DO_TEST_REDIS_URL": rig.redis_url,
        "DO_TEST_DB": str(machine.database),
        "DO_TEST_STORAGE_ROOT": str(machine.storage_root),
    }
    if rig.replica_url:
        env["DO_TEST_REPLICA_URL"] = rig.replica_url
        env["DO_TEST_LITESTREAM_SOCKET"] = str(machine.litestream_socket)
    return env


def make_rig(**options):
    """A Rig of the test settings; options go to Rig (machines, replication, env...)."""
    return Rig(
        project_dir=REPO,
        settings="tests.support.cluster_settings",
        application="tests.support.asgi:application",
        environment=machine_environment,
        **options,
    )


@pytest.fixture(scope="session")
def rig_factory():
    """make_rig, for a test that needs a rig of its own (closed by the test)."""
    return make_rig


@pytest.fixture(scope="session")
def rig():
    """Redis and SeaweedFS on a bridge (or loopback), for the session; no machines."""
    with make_rig() as rig:
        yield rig


@pytest.fixture
def machines(rig):
    """``machines(n, rqworker=False, **env)``: start n machines (env added to their
    environment; rqworker: each runs an RQ worker too, for alarms)."""

    def start(count, *, rqworker=False, **env):
        rig.env = {key: str(value) for key, value in env.items()}
        rig.rqworker = rqworker
        return rig.add_machines(count)

    yield start
    rig.env = {}
    rig.rqworker = False
    rig.clear()
