"""System checks: exact messages, hints and ids (listed in docs/ref/checks.md)."""

from django.core.checks import Error

from durable_objects import DurableObject
from durable_objects.checks import check_durable_objects
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
    assert errors[0].hint.startswith("Known keys: ALARM_BACKEND, ALARM_MAX_RETRIES,")


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


def test_e008_placement_and_role_are_known_words(settings):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "PLACEMENT": "zookeeper"}
    assert [e.id for e in check_durable_objects()] == ["durable_objects.E008"]


def test_e009_a_cluster_needs_redis_and_a_redis_channel_layer(settings, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "PLACEMENT": "redis"}
    assert [e.id for e in check_durable_objects()] == ["durable_objects.E009"]
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "REDIS_URL": "redis://x"}
    assert [e.id for e in check_durable_objects()] == ["durable_objects.E009"]  # in-memory
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}
    assert check_durable_objects() == []


def test_e009_the_transport_layer_must_exist(settings):
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "PLACEMENT": "redis",
        "REDIS_URL": "redis://x",
        "TRANSPORT_LAYER": "transport",
    }
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}
    assert [e.id for e in check_durable_objects()] == ["durable_objects.E009"]
    settings.CHANNEL_LAYERS = {
        **settings.CHANNEL_LAYERS,
        "transport": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer"},
    }
    assert check_durable_objects() == []


def test_e010_alarm_retries_must_be_a_whole_number(settings):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "ALARM_MAX_RETRIES": -1}
    errors = [e for e in check_durable_objects() if e.id == "durable_objects.E010"]
    assert len(errors) == 1 and "-1" in errors[0].msg


def test_e011_alarm_backend_importable_and_rq_needs_the_cluster(settings):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "ALARM_BACKEND": "no.such.Backend"}
    [error] = [e for e in check_durable_objects() if e.id == "durable_objects.E011"]
    assert "cannot be imported" in error.msg
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "ALARM_BACKEND": "durable_objects.alarms.rq.RQAlarms",
    }
    [error] = [e for e in check_durable_objects() if e.id == "durable_objects.E011"]
    assert "PLACEMENT 'redis'" in error.msg


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
