"""Deleting a replica generation that no one restores from any more.

Each move of an object to another machine starts a new generation at a path of its own;
Litestream's retention trims files inside the generation a daemon writes, but nothing
deletes a generation no daemon writes any more. ``delete_replica()`` does, for a
``file://`` replica (a directory) and for S3 (through boto3, the AWS SDK: any S3 API
that takes ``ListObjectsV2`` and ``DeleteObjects``). The runtime decides when
(``runtime.replica``: a generation retired longer than ``REPLICATION["RETENTION"]``).
``replica_generations()`` lists the generations an object has in the store, for a host
that finds no lineage of it in Redis.
"""

import functools
import shutil
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from .config import check_replica_url, daemon_environment
from .errors import ReplicationError

BATCH = 1000  # keys per DeleteObjects request, S3's limit


def delete_replica(url, *, environ=None):
    """Delete every file of the replica at url; return how many were deleted.

    ReplicationError naming the problem if the store refuses (the replica is then left
    as it was, or partly deleted: a later call finishes it).
    """
    check_replica_url(url)
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = Path(unquote(parts.path))
        if not path.exists():
            return 0
        count = sum(1 for item in path.rglob("*") if item.is_file())
        shutil.rmtree(path)
        return count
    if parts.scheme != "s3":
        raise ReplicationError(
            f"Deleting old replica generations is built for file:// and s3:// replicas, "
            f"not {parts.scheme}://; delete {url} with the store's own tools."
        )
    return _delete_s3(parts, environ)


def _delete_s3(parts, environ):
    client, errors = _s3_client(parts, environ, "Deleting old replica generations")
    BotoCoreError, ClientError = errors
    bucket = parts.netloc
    prefix = parts.path.strip("/") + "/"
    deleted = 0
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        keys = []
        for page in pages:
            keys.extend({"Key": item["Key"]} for item in page.get("Contents", ()))
        for start in range(0, len(keys), BATCH):
            batch = keys[start : start + BATCH]
            client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            deleted += len(batch)
    except (BotoCoreError, ClientError) as error:
        raise ReplicationError(
            f"Deleting the replica s3://{bucket}/{prefix} failed: {error}"
        ) from None
    return deleted


def _s3_client(parts, environ, what):
    """A boto3 S3 client for the replica URL's endpoint and region, and boto's errors."""
    try:
        import boto3  # noqa: F401 (here: a clear error if it is missing)
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise ReplicationError(
            f"{what} in S3 needs boto3: install the replication extra "
            "(pip install 'django-durable-objects[replication]')."
        ) from None
    query = parse_qs(parts.query)
    env = daemon_environment(environ)
    client = _cached_client(
        query.get("endpoint", [None])[0],
        query.get("region", ["us-east-1"])[0],
        env.get("AWS_ACCESS_KEY_ID") or env.get("LITESTREAM_ACCESS_KEY_ID"),
        env.get("AWS_SECRET_ACCESS_KEY") or env.get("LITESTREAM_SECRET_ACCESS_KEY"),
        Config,
    )
    return client, (BotoCoreError, ClientError)


def replica_generations(url, *, environ=None):
    """The generations that hold files under an object's replica URL (its generations'
    parent, ``<prefix>/<label>/<id[:2]>/<id>``), as a set of ints.

    What the runtime reads when Redis lost an object's lineage: the newest generation in
    the store is the newest copy anyone synced. ReplicationError if the store cannot be
    listed, or the scheme is one this cannot list (only file:// and s3://).
    """
    check_replica_url(url)
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = Path(unquote(parts.path))
        if not path.is_dir():
            return set()
        return {
            int(child.name)
            for child in path.iterdir()
            if child.name.isdigit() and any(item.is_file() for item in child.rglob("*"))
        }
    if parts.scheme != "s3":
        raise ReplicationError(
            f"Listing replica generations is built for file:// and s3:// replicas, not "
            f"{parts.scheme}://."
        )
    client, (BotoCoreError, ClientError) = _s3_client(
        parts, environ, "Listing replica generations"
    )
    bucket = parts.netloc
    prefix = parts.path.strip("/") + "/"
    try:
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/"
        )
        names = [
            common["Prefix"][len(prefix) :].rstrip("/")
            for page in pages
            for common in page.get("CommonPrefixes", ())
        ]
    except (BotoCoreError, ClientError) as error:
        raise ReplicationError(f"Listing s3://{bucket}/{prefix} failed: {error}") from None
    return {int(name) for name in names if name.isdigit()}


@functools.lru_cache(maxsize=8)
def _cached_client(endpoint, region, key_id, secret, config_class):
    """One client per store and credentials: making one costs tens of milliseconds, and
    boto3's clients are safe to share between threads."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=config_class(
            s3={"addressing_style": "path" if endpoint else "auto"},
            retries={"max_attempts": 3},
            connect_timeout=5,
            read_timeout=30,
        ),
    )
