"""Replication of shards by Litestream: settings, the daemon's control socket, restore.

The runtime's use of it (the output gate that waits for the replica, restore on a
move) is ``durable_objects.runtime.replica``; docs/topics/replication.md.
"""

from .binaries import litestream_binary
from .collect import delete_replica, replica_generations
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
from .local import (
    local_generation,
    machine_id,
    remove_local_copy,
    set_local_generation,
)
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
    "delete_replica",
    "litestream_binary",
    "local_generation",
    "machine_id",
    "remove_local_copy",
    "replica_generations",
    "replication_settings",
    "restore",
    "set_local_generation",
    "shard_replica_url",
]
