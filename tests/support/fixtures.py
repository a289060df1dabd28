"""Fixtures of every test directory (tests/ and demo_site/tests/), through conftest.py."""

import pytest

from durable_objects.placement.local import unlock_storage_root
from durable_objects.runtime.lifecycle import reset_host


@pytest.fixture(autouse=True)
def storage_root(tmp_path, settings):
    """Give every test a storage root of its own and a fresh host."""
    root = tmp_path / "objects"
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "STORAGE_ROOT": str(root)}
    yield root
    reset_host()
    unlock_storage_root(root)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A Redis for the cluster tests: REDIS_URL if set, else a private redis-server."""
    from durable_objects.testing.servers import redis_url_for_tests

    url, server = redis_url_for_tests(tmp_path_factory)
    yield url
    if server is not None:
        server.stop()
