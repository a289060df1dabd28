"""System checks: exact messages, hints and ids (listed in docs/ref/checks.md)."""

import pytest
from django.core.checks import Error

from durable_objects import DurableObject
from durable_objects.alarms.local import LocalAlarms
from durable_objects.alarms.rq import RQAlarms
from durable_objects.checks import check_durable_objects
from durable_objects.placement.local import LocalPlacement
from durable_objects.placement.redis import RedisPlacement
from durable_objects.registry import registry


def ids(errors):
    return [error.id for error in errors]


def test_default_test_settings_pass():
    assert check_durable_objects() == []


def test_e001_storage_root_not_writable(settings, tmp_path):
    # A path under a regular file can never be created, whoever runs the tests (even root).
    blocker = tmp_path / "file"
    blocker.write_text("")
    root = blocker / "objects"
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "STORAGE_ROOT": str(root)}
    errors = [e for e in check_durable_objects() if e.id == "durable_objects.E001"]
    assert errors == [
        Error(
            f"The storage root {root} is not writable.",
            hint="Set DURABLE_OBJECTS['STORAGE_ROOT'] to a directory this process can "
            "write, or fix its permissions.",
            id="durable_objects.E001",
        )
    ]


def test_e002_unknown_settings_keys(settings):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "STORAGE_RUT": "x", "ZZZ": 1}
    errors = [e for e in check_durable_objects() if e.id == "durable_objects.E002"]
    assert len(errors) == 1
    assert errors[0].msg == "DURABLE_OBJECTS has unknown keys: STORAGE_RUT, ZZZ."
    assert errors[0].hint.startswith(
        "Known keys: ALARM_BACKEND, ALARM_FALLBACK_DELAY, ALARM_MAX_RETRIES,"
    )


def test_e003_labels_that_differ_only_in_case():
    class counter(DurableObject):
        pass

    try:
        errors = [e for e in check_durable_objects() if e.id == "durable_objects.E003"]
        assert [e.msg for e in errors] == [
            "DurableObject labels 'tests.Counter' and 'tests.counter' differ only in case; "
            "their shards would share a directory on case-insensitive disks."
        ]
        assert errors[0].hint == "Rename one class or set Meta.label."
    finally:
        registry.unregister("tests.counter")


def test_e004_channel_layer_missing(settings):
    settings.CHANNEL_LAYERS = {}
    errors = [e for e in check_durable_objects() if e.id == "durable_objects.E004"]
    assert [e.msg for e in errors] == [
        "No default channel layer is configured; objects cannot reach their WebSockets."
    ]
    assert "InProcessChannelLayer" in errors[0].hint


def test_e005_synchronous_choice(settings):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "SYNCHRONOUS": "OFF"}
    errors = [e for e in check_durable_objects() if e.id == "durable_objects.E005"]
    assert [(e.msg, e.hint) for e in errors] == [
        ("DURABLE_OBJECTS['SYNCHRONOUS'] is 'OFF'.", "Use one of: FULL, NORMAL, EXTRA.")
    ]


@pytest.mark.parametrize("size", [1000, 256, 131072, "16384", True])
def test_e023_shard_page_size_is_a_power_of_two_sqlite_takes(settings, size):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "SHARD_PAGE_SIZE": size}
    errors = [e for e in check_durable_objects() if e.id == "durable_objects.E023"]
    assert [e.msg for e in errors] == [f"DURABLE_OBJECTS['SHARD_PAGE_SIZE'] is {size!r}."]
    assert "16384" in errors[0].hint


def test_e023_passes_sqlites_page_sizes(settings):
    for size in (512, 4096, 16384, 65536):
        settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "SHARD_PAGE_SIZE": size}
        assert [e for e in check_durable_objects() if e.id == "durable_objects.E023"] == []


def test_e006_limits_must_be_positive_numbers(settings):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "MAX_KEY_SIZE": 0, "CALL_TIMEOUT": "x"}
    errors = [e for e in check_durable_objects() if e.id == "durable_objects.E006"]
    assert [e.msg for e in errors] == [
        "DURABLE_OBJECTS['MAX_KEY_SIZE'] must be a positive number, not 0.",
        "DURABLE_OBJECTS['CALL_TIMEOUT'] must be a positive number, not 'x'.",
    ]
    assert errors[0].hint == "Remove it to use the default, 2048."


def test_checks_run_with_manage_py_check(settings):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "BOGUS": 1}
    try:
        call_command("check")
    except SystemCheckError as exc:
        assert "durable_objects.E002" in str(exc)
    else:
        raise AssertionError("manage.py check passed with an unknown setting")


def test_e007_method_names_taken_by_the_stub():
    class ReservedNames(DurableObject):
        def name(self):
            return "unreachable"

    try:
        errors = [e for e in check_durable_objects() if e.id == "durable_objects.E007"]
    finally:
        registry.unregister("tests.ReservedNames")
    assert [(e.msg, e.hint, e.obj) for e in errors] == [
        (
            "ReservedNames.name() cannot be called through a stub: stub.name is the "
            "stub's own attribute.",
            "Rename the method.",
            ReservedNames,
        )
    ]


def test_e006_covers_the_websocket_limits(settings):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "WEBSOCKET_MAX_IN_FLIGHT": 0}
    errors = [e for e in check_durable_objects() if e.id == "durable_objects.E006"]
    assert [e.msg for e in errors] == [
        "DURABLE_OBJECTS['WEBSOCKET_MAX_IN_FLIGHT'] must be a positive number, not 0."
    ]


def cluster_settings(settings, **extra):
    """A cluster that passes every check: Redis URL, Redis default layer, RQ queue."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "PLACEMENT": "redis",
        "REDIS_URL": "redis://x",
        **extra,
    }


def test_e008_placement_is_an_alias_or_an_importable_path(settings):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "PLACEMENT": "zookeeper"}
    assert check_durable_objects() == [
        Error(
            "DURABLE_OBJECTS['PLACEMENT'] is 'zookeeper', which cannot be imported "
            "(zookeeper doesn't look like a module path).",
            hint="Use 'local' (one process), 'redis' (a cluster) or the dotted path of a "
            "BasePlacement subclass.",
            id="durable_objects.E008",
        )
    ]


def test_e008_placement_must_be_a_placement_backend(settings):
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "PLACEMENT": "tests.support.objects.Counter",
    }
    assert check_durable_objects() == [
        Error(
            "DURABLE_OBJECTS['PLACEMENT'] is 'tests.support.objects.Counter', which is not a "
            "subclass of durable_objects.placement.base.BasePlacement.",
            hint="Use 'local' (one process), 'redis' (a cluster) or the dotted path of a "
            "BasePlacement subclass.",
            id="durable_objects.E008",
        )
    ]


class ClusterPlacement(RedisPlacement):
    """A subclass of the Redis placement: it must be checked as the Redis placement is."""


class OnePlacement(LocalPlacement):
    """A subclass of the local placement."""


def test_a_subclass_of_a_placement_backend_is_checked_like_it(settings):
    cluster_settings(settings, PLACEMENT="tests.test_checks.ClusterPlacement", REDIS_URL=None)
    settings.RQ_QUEUES = {"default": {"URL": "redis://x", "SERIALIZER": "json"}}
    ids = [e.id for e in check_durable_objects()]
    assert ids == ["durable_objects.E009"]  # no Redis URL, and nothing else wrong
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "PLACEMENT": "tests.test_checks.OnePlacement",
        "ALARM_BACKEND": "durable_objects.alarms.rq.RQAlarms",
    }
    # The RQ backend needs a distributed placement, whatever its path.
    assert [e.id for e in check_durable_objects()] == ["durable_objects.E017"]


def test_e013_cluster_role_is_a_known_word(settings):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "CLUSTER_ROLE": "leader"}
    assert check_durable_objects() == [
        Error(
            "DURABLE_OBJECTS['CLUSTER_ROLE'] is 'leader'.",
            hint="Use one of: 'auto', 'host', 'client'.",
            id="durable_objects.E013",
        )
    ]


def test_e009_a_cluster_needs_a_redis_url(settings, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    cluster_settings(settings, REDIS_URL=None)
    assert check_durable_objects() == [
        Error(
            "PLACEMENT is 'redis' but no Redis URL is set.",
            hint="Set DURABLE_OBJECTS['REDIS_URL'] or the REDIS_URL environment variable.",
            id="durable_objects.E009",
        )
    ]
    monkeypatch.setenv("REDIS_URL", "redis://from-the-environment")
    assert check_durable_objects() == []


def test_e014_a_cluster_needs_a_channel_layer_that_reaches_other_processes(settings):
    cluster_settings(settings)
    for backend in (
        "channels.layers.InMemoryChannelLayer",
        "durable_objects.layers.InProcessChannelLayer",
    ):
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": backend}}
        assert check_durable_objects() == [
            Error(
                f"PLACEMENT is 'redis' but the default channel layer is {backend}, which "
                "cannot reach other processes.",
                hint="Use channels_redis.core.RedisChannelLayer as the default channel "
                "layer, its hosts given as {'address': url, 'socket_timeout': None} "
                "(durable_objects.conf.cluster_channel_layers() writes CHANNEL_LAYERS).",
                id="durable_objects.E014",
            )
        ]


def test_e015_the_transport_layer_must_exist(settings):
    cluster_settings(settings, TRANSPORT_LAYER="transport")
    assert check_durable_objects() == [
        Error(
            "DURABLE_OBJECTS['TRANSPORT_LAYER'] is 'transport', which is not a key of "
            "CHANNEL_LAYERS.",
            hint="Add that layer to CHANNEL_LAYERS (channels_redis.pubsub."
            "RedisPubSubChannelLayer is the fastest), or remove TRANSPORT_LAYER to use the "
            "default layer.",
            id="durable_objects.E015",
        )
    ]
    settings.CHANNEL_LAYERS = {
        **settings.CHANNEL_LAYERS,
        "transport": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer"},
    }
    assert check_durable_objects() == []


def test_a_cluster_without_a_default_layer_is_e004_alone(settings):
    cluster_settings(settings)
    settings.CHANNEL_LAYERS = {}
    assert ids(check_durable_objects()) == ["durable_objects.E004"]


def test_each_cluster_condition_is_reported_on_its_own(settings, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "PLACEMENT": "redis",
        "CLUSTER_ROLE": "boss",
        "TRANSPORT_LAYER": "missing",
    }
    assert ids(check_durable_objects()) == [
        "durable_objects.E013",
        "durable_objects.E009",
        "durable_objects.E014",
        "durable_objects.E015",
    ]


def test_e010_alarm_retries_must_be_a_whole_number(settings):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "ALARM_MAX_RETRIES": -1}
    errors = [e for e in check_durable_objects() if e.id == "durable_objects.E010"]
    assert len(errors) == 1 and "-1" in errors[0].msg


def test_e011_alarm_backend_cannot_be_imported(settings):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "ALARM_BACKEND": "no.such.Backend"}
    assert check_durable_objects() == [
        Error(
            "DURABLE_OBJECTS['ALARM_BACKEND'] 'no.such.Backend' cannot be imported: "
            "No module named 'no'.",
            hint="Use durable_objects.alarms.local.LocalAlarms or "
            "durable_objects.alarms.rq.RQAlarms.",
            id="durable_objects.E011",
        )
    ]


class NotABackend:
    """Has the methods, but is no BaseAlarmBackend."""

    def __init__(self, host):
        pass


class CustomLocalAlarms(LocalAlarms):
    """A trivial subclass: it must pass wherever LocalAlarms does."""


class CustomRQAlarms(RQAlarms):
    """A trivial subclass: it must pass wherever RQAlarms does."""


def test_e016_alarm_backend_is_not_a_backend_class(settings):
    for path in ("tests.test_checks.NotABackend", "durable_objects.alarms.rq.get_queue"):
        settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "ALARM_BACKEND": path}
        assert check_durable_objects() == [
            Error(
                f"DURABLE_OBJECTS['ALARM_BACKEND'] {path!r} is not a subclass of "
                "durable_objects.alarms.base.BaseAlarmBackend.",
                hint="Use durable_objects.alarms.local.LocalAlarms, "
                "durable_objects.alarms.rq.RQAlarms, or a subclass of BaseAlarmBackend.",
                id="durable_objects.E016",
            )
        ]


def test_e017_the_rq_backend_needs_the_redis_placement(settings):
    for path in ("durable_objects.alarms.rq.RQAlarms", "tests.test_checks.CustomRQAlarms"):
        settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "ALARM_BACKEND": path}
        assert check_durable_objects() == [
            Error(
                f"The alarm backend {path} needs PLACEMENT 'redis' (its deliveries run in a "
                "process apart, which must reach the objects' hosts), not 'local'.",
                hint="Set DURABLE_OBJECTS['PLACEMENT'] to 'redis' (docs/topics/cluster.md), "
                "or use durable_objects.alarms.local.LocalAlarms.",
                id="durable_objects.E017",
            )
        ]


def test_e018_the_rq_backend_needs_its_queue(settings):
    for path in ("durable_objects.alarms.rq.RQAlarms", "tests.test_checks.CustomRQAlarms"):
        cluster_settings(settings, ALARM_BACKEND=path, ALARM_QUEUE="alarms")
        assert check_durable_objects() == [
            Error(
                f"The alarm backend {path} needs RQ_QUEUES['alarms'], the django-rq queue "
                "of its jobs (ALARM_QUEUE).",
                hint="Add 'django_rq' to INSTALLED_APPS and RQ_QUEUES = {'alarms': "
                "{'URL': <your Redis URL>}}, or set DURABLE_OBJECTS['ALARM_QUEUE'] to a "
                "key of RQ_QUEUES.",
                id="durable_objects.E018",
            )
        ]


def test_subclasses_of_the_alarm_backends_pass_where_the_backends_do(settings):
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "ALARM_BACKEND": "tests.test_checks.CustomLocalAlarms",
    }
    assert check_durable_objects() == []
    cluster_settings(settings, ALARM_BACKEND="tests.test_checks.CustomRQAlarms")
    assert check_durable_objects() == []
    # The local backend needs no cluster, but works in one too (a timer in each host).
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "ALARM_BACKEND": "tests.test_checks.CustomLocalAlarms",
    }
    assert check_durable_objects() == []


def test_a_backend_check_of_its_own_is_run(settings):
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "ALARM_BACKEND": "tests.test_checks.CheckedAlarms",
    }
    assert check_durable_objects() == [Error("checked", id="tests.E001")]


class CheckedAlarms(LocalAlarms):
    @classmethod
    def check(cls, **kwargs):
        yield from super().check(**kwargs)
        yield Error("checked", id="tests.E001")


def test_e012_a_method_named_check_is_reported_not_called():
    class Shadowing(DurableObject):
        class Meta:
            label = "tests.ShadowingCheck"

        def check(self, rate, burst):
            return True

    try:
        errors = [e for e in check_durable_objects() if e.id == "durable_objects.E012"]
        assert [e.obj for e in errors] == [Shadowing]
    finally:
        registry.unregister("tests.ShadowingCheck")


def test_e006_covers_every_key_of_positive_keys(settings):
    from durable_objects.conf import POSITIVE_KEYS

    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        **dict.fromkeys(POSITIVE_KEYS, True),  # a bool is not a number here
    }
    errors = [e for e in check_durable_objects() if e.id == "durable_objects.E006"]
    assert [e.msg for e in errors] == [
        f"DURABLE_OBJECTS[{key!r}] must be a positive number, not True." for key in POSITIVE_KEYS
    ]


def test_e006_refuses_a_limit_that_is_neither_positive_nor_none(settings):
    from durable_objects.conf import OPTIONAL_POSITIVE_KEYS

    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        **dict.fromkeys(OPTIONAL_POSITIVE_KEYS, "64"),
    }
    errors = [e for e in check_durable_objects() if e.id == "durable_objects.E006"]
    assert [e.msg for e in errors] == [
        f"DURABLE_OBJECTS[{key!r}] must be a positive number or None, not '64'."
        for key in OPTIONAL_POSITIVE_KEYS
    ]
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        **dict.fromkeys(OPTIONAL_POSITIVE_KEYS, None),
    }
    assert [e for e in check_durable_objects() if e.id == "durable_objects.E006"] == []


def test_every_check_id_is_documented_once():
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    source = "\n".join(p.read_text() for p in (repo / "durable_objects").rglob("*.py"))
    used = set(re.findall(r'id="durable_objects\.(E\d{3})"', source))
    headings = re.findall(
        r"^## durable_objects\.(E\d{3})$", (repo / "docs/ref/checks.md").read_text(), re.M
    )
    assert sorted(headings) == sorted(set(headings)) == sorted(used)
