"""Replication of shards by Litestream: settings, the daemon's control socket, restore.

The foundation of issue 14 (docs/topics/replication.md); the output gate and failover
build on it.
"""

from .binaries import litestream_binary
from .config import (
    ReplicationSettings,
    daemon_config,
    daemon_environment,
    replication_settings,
    shard_replica_url,
)
from .errors import (
    DaemonError,
    DaemonUnreachable,
    DatabaseNotRegistered,
    LitestreamNotFound,
    NoReplica,
    ReplicationError,
    ReplicaUnavailable,
    RestoreError,
)
from .litestream import LitestreamClient, SyncResult
from .restore import RestoreResult, restore

__all__ = [
    "DaemonError",
    "DaemonUnreachable",
    "DatabaseNotRegistered",
    "LitestreamClient",
    "LitestreamNotFound",
    "NoReplica",
    "ReplicaUnavailable",
    "ReplicationError",
    "ReplicationSettings",
    "RestoreError",
    "RestoreResult",
    "SyncResult",
    "daemon_config",
    "daemon_environment",
    "litestream_binary",
    "replication_settings",
    "restore",
    "shard_replica_url",
]
