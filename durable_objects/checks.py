"""System checks, ``durable_objects.E001`` and on; listed in docs/ref/checks.md."""

import os

from django.conf import settings
from django.core.checks import Error, register

from .conf import DEFAULTS, SYNCHRONOUS_CHOICES, alarm_backend_path, get_config, unknown_keys
from .registry import registry


@register()
def check_durable_objects(app_configs=None, **kwargs):
    """Check the settings, the storage root, the channel layer and every class."""
    errors = []
    errors.extend(_check_settings())
    errors.extend(_check_storage_root())
    errors.extend(_check_channel_layer())
    errors.extend(_check_cluster())
    errors.extend(_check_alarms())
    errors.extend(_check_labels())
    for cls in registry.all():
        if _shadows_check(cls):
            errors.append(
                Error(
                    f"{cls.__name__}.check() replaces DurableObject.check(), the class's "
                    "system check, and cannot be called through a stub either.",
                    hint="Rename the method.",
                    obj=cls,
                    id="durable_objects.E012",
                )
            )
            continue
        errors.extend(cls.check(**kwargs))
    return errors


def _shadows_check(cls):
    from .base import DurableObject

    for klass in cls.__mro__:
        if klass is DurableObject:
            return False
        if "check" in vars(klass):
            return not isinstance(vars(klass)["check"], classmethod)
    return False


def _check_settings():
    unknown = unknown_keys()
    if unknown:
        yield Error(
            f"DURABLE_OBJECTS has unknown keys: {', '.join(unknown)}.",
            hint="Known keys: " + ", ".join(sorted(DEFAULTS)) + ".",
            id="durable_objects.E002",
        )
    config = get_config()
    if config["SYNCHRONOUS"] not in SYNCHRONOUS_CHOICES:
        yield Error(
            f"DURABLE_OBJECTS['SYNCHRONOUS'] is {config['SYNCHRONOUS']!r}.",
            hint="Use one of: " + ", ".join(SYNCHRONOUS_CHOICES) + ".",
            id="durable_objects.E005",
        )
    for key in (
        "MAX_KEY_SIZE",
        "MAX_ENTRY_SIZE",
        "MAX_CALL_SIZE",
        "CALL_TIMEOUT",
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
    ):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            yield Error(
                f"DURABLE_OBJECTS[{key!r}] must be a positive number, not {value!r}.",
                hint=f"Remove it to use the default, {DEFAULTS[key]!r}.",
                id="durable_objects.E006",
            )


def _check_storage_root():
    root = get_config()["STORAGE_ROOT"]
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        yield Error(
            f"The storage root {root} is not writable.",
            hint="Set DURABLE_OBJECTS['STORAGE_ROOT'] to a directory this process can write, "
            "or fix its permissions.",
            id="durable_objects.E001",
        )


def _check_channel_layer():
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    if "default" not in layers:
        yield Error(
            "No default channel layer is configured; objects cannot reach their WebSockets.",
            hint="Add CHANNEL_LAYERS = {'default': {'BACKEND': "
            "'durable_objects.layers.InProcessChannelLayer'}} for one process, or "
            "channels_redis's RedisChannelLayer for a cluster.",
            id="durable_objects.E004",
        )


def _check_cluster():
    config = get_config()
    placement, role = config["PLACEMENT"], config["CLUSTER_ROLE"]
    if placement not in ("local", "redis") or role not in ("auto", "host", "client"):
        yield Error(
            f"DURABLE_OBJECTS has PLACEMENT {placement!r} and CLUSTER_ROLE {role!r}.",
            hint="PLACEMENT is 'local' or 'redis'; CLUSTER_ROLE is 'auto', 'host' or 'client'.",
            id="durable_objects.E008",
        )
        return
    if placement != "redis":
        return
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    backend = layers.get("default", {}).get("BACKEND")
    transport = layers.get(config["TRANSPORT_LAYER"], {}).get("BACKEND")
    if (
        not (config["REDIS_URL"] or os.environ.get("REDIS_URL"))
        or transport is None
        or backend
        in (
            "channels.layers.InMemoryChannelLayer",
            "durable_objects.layers.InProcessChannelLayer",
        )
    ):
        yield Error(
            "PLACEMENT is 'redis' but the cluster has no Redis URL, its default channel "
            "layer is an in-memory one that cannot reach other processes, or "
            "TRANSPORT_LAYER names no channel layer.",
            hint="Set DURABLE_OBJECTS['REDIS_URL'] (or REDIS_URL in the environment) and "
            "use channels_redis.core.RedisChannelLayer as the default channel layer, its "
            "hosts given as {'address': url, 'socket_timeout': None}.",
            id="durable_objects.E009",
        )


def _check_alarms():
    from django.utils.module_loading import import_string

    config = get_config()
    retries = config["ALARM_MAX_RETRIES"]
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        yield Error(
            f"DURABLE_OBJECTS['ALARM_MAX_RETRIES'] must be a whole number >= 0, not {retries!r}.",
            hint="Remove it to use the default, 6.",
            id="durable_objects.E010",
        )
    path = alarm_backend_path(config)
    try:
        import_string(path)
    except ImportError as exc:
        yield Error(
            f"DURABLE_OBJECTS['ALARM_BACKEND'] {path!r} cannot be imported: {exc}.",
            hint="Use durable_objects.alarms.local.LocalAlarms or "
            "durable_objects.alarms.rq.RQAlarms.",
            id="durable_objects.E011",
        )
        return
    if path.endswith(".RQAlarms"):
        queues = getattr(settings, "RQ_QUEUES", None) or {}
        if config["PLACEMENT"] != "redis" or config["ALARM_QUEUE"] not in queues:
            yield Error(
                "The RQ alarm backend needs PLACEMENT 'redis' (its jobs run in rqworker, a "
                f"process apart) and RQ_QUEUES[{config['ALARM_QUEUE']!r}] (ALARM_QUEUE).",
                hint="Add 'django_rq' to INSTALLED_APPS and RQ_QUEUES = {'default': {'URL': "
                "<your Redis URL>}}, or use the local backend with PLACEMENT 'local'.",
                id="durable_objects.E011",
            )


def _check_labels():
    seen = {}
    for cls in registry.all():
        folded = cls._meta.label.lower()
        other = seen.get(folded)
        if other is not None:
            yield Error(
                f"DurableObject labels {other._meta.label!r} and {cls._meta.label!r} differ "
                "only in case; their shards would share a directory on case-insensitive disks.",
                hint="Rename one class or set Meta.label.",
                obj=cls,
                id="durable_objects.E003",
            )
        seen[folded] = cls
