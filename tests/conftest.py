"""Fixtures shared by the test suite."""

import pytest

from durable_objects.runtime.host import reset_host
from durable_objects.runtime.lock import unlock_storage_root


@pytest.fixture(autouse=True)
def storage_root(tmp_path, settings):
    """Give every test a storage root of its own and a fresh host."""
    root = tmp_path / "objects"
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "STORAGE_ROOT": str(root)}
    yield root
    reset_host()
    unlock_storage_root(root)
