"""The class, its Meta, the registry, IDs and stubs."""

import pytest
from django.test import override_settings

from durable_objects import DurableObject, DurableObjectId
from durable_objects.options import ALLOWED_OPTIONS
from durable_objects.registry import registry
from tests.support.objects import Counter, Mixed, Plain, Relay, Sleepy


def test_label_is_app_label_and_class_name():
    assert Counter._meta.label == "tests.Counter"
    assert registry.get("tests.Counter") is Counter


def test_meta_options_are_whitelisted():
    with pytest.raises(TypeError, match=r"Meta has an unknown option 'ordering'"):

        class Bad(DurableObject):
            class Meta:
                label = "tests.Bad"
                ordering = ["x"]

    assert "ordering" not in ALLOWED_OPTIONS
    with pytest.raises(LookupError):
        registry.get("tests.Bad")


def test_hibernate_after_comes_from_meta_or_settings(settings):
    assert Sleepy._meta.hibernate_after == 0.2
    assert Counter._meta.hibernate_after == 10
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "HIBERNATE_AFTER": 3}
    assert Counter._meta.hibernate_after == 3


@pytest.mark.parametrize("value", [0, -1, "10", float("nan"), float("inf"), True])
def test_invalid_hibernate_after_is_refused(value):
    with pytest.raises(ValueError, match="hibernate_after must be a positive number"):

        class BadSleep(DurableObject):
            class Meta:
                label = "tests.BadSleep"
                hibernate_after = value


def test_two_classes_with_one_label_are_refused():
    with pytest.raises(RuntimeError, match="Conflicting DurableObject label 'tests.Counter'"):

        class Counter(DurableObject):
            pass

    assert registry.get("tests.Counter").__module__ == "tests.support.objects"


def test_meta_label_overrides_and_is_validated():
    class Named(DurableObject):
        class Meta:
            label = "custom.Thing"

    try:
        assert registry.get("custom.Thing") is Named
        assert Named.objects.label == "custom.Thing"
    finally:
        registry.unregister("custom.Thing")
    with pytest.raises(ValueError, match="Meta.label must look like 'app_label.ClassName'"):

        class BadLabel(DurableObject):
            class Meta:
                label = "../etc"


def test_class_outside_installed_apps_needs_a_label():
    namespace = {"__module__": "somewhere.else", "__qualname__": "Stray"}
    with pytest.raises(RuntimeError, match="isn't in an application in INSTALLED_APPS"):
        type(DurableObject)("Stray", (DurableObject,), namespace)


def test_abstract_classes_are_not_registered_and_pass_options_on():
    class Base(DurableObject):
        class Meta:
            abstract = True
            hibernate_after = 4

        def shared(self):
            return "shared"

    assert not hasattr(Base, "objects")

    class Child(Base):
        pass

    try:
        assert Child._meta.label == "tests.Child"
        assert Child._meta.hibernate_after == 4
        assert "shared" in Child.objects.methods
    finally:
        registry.unregister("tests.Child")


async def test_plain_mixins_work():
    assert await Mixed.objects.get_by_name("m").shout("hi") == "HI"


def test_objects_is_not_reachable_from_instances():
    class Probe:
        pass

    instance = Counter.__new__(Counter)
    with pytest.raises(AttributeError, match="objects isn't accessible via Counter instances"):
        instance.objects  # noqa: B018
    assert Probe


# -- IDs ---------------------------------------------------------------------------------


def test_id_from_name_is_deterministic_and_independent_of_secret_key():
    expected = "05fe32d2805b39fc9a28b39ef9351d6834791ac8cdd85bd498754fc304559732"
    assert str(Counter.objects.id_from_name("alice")) == expected
    with override_settings(SECRET_KEY="something else"):
        assert str(Counter.objects.id_from_name("alice")) == expected


def test_same_name_in_another_class_is_another_id():
    assert str(Counter.objects.id_from_name("x")) != str(Relay.objects.id_from_name("x"))


def test_ids_are_64_lowercase_hex_and_round_trip():
    unique = Counter.objects.new_unique_id()
    text = str(unique)
    assert len(text) == 64 and text == text.lower()
    assert Counter.objects.id_from_string(text) == unique
    assert unique.name is None
    named = Counter.objects.id_from_name("bob")
    assert named.name == "bob"
    assert Counter.objects.id_from_string(str(named)).equals(named)
    assert Counter.objects.new_unique_id() != unique


@pytest.mark.parametrize(
    "text",
    ["", "abc", "g" * 64, "A" * 64, "0" * 63, "0" * 65, " " + "0" * 63, "0" * 64],
)
def test_malformed_ids_are_refused(text):
    with pytest.raises(ValueError, match="not a valid object ID|not an ID of tests.Counter"):
        Counter.objects.id_from_string(text)


def test_ids_of_another_class_are_refused():
    foreign = str(Relay.objects.id_from_name("x"))
    with pytest.raises(ValueError, match="belongs to another class"):
        Counter.objects.id_from_string(foreign)
    with pytest.raises(ValueError, match="is an ID of tests.Relay, not of tests.Counter"):
        Counter.objects.get(Relay.objects.id_from_name("x"))


def test_id_arguments_of_the_wrong_type_are_refused():
    with pytest.raises(TypeError):
        Counter.objects.id_from_string(123)
    with pytest.raises(TypeError):
        Counter.objects.id_from_name(None)
    with pytest.raises(ValueError, match="must not be empty"):
        Counter.objects.id_from_name("")
    with pytest.raises(TypeError):
        Counter.objects.get(42)


def test_id_is_hashable_and_compares_by_class_and_hex():
    a = DurableObjectId.from_name("tests.Counter", "a")
    assert {a, Counter.objects.id_from_name("a")} == {a}


async def test_object_knows_its_name_and_id():
    stub = Counter.objects.get_by_name("who")
    assert await stub.my_name() == "who"
    assert await stub.my_id() == str(stub.id)
    await stub.increment()  # the shard now records the name


async def test_name_is_known_inside_when_called_by_hex_id():
    named = Counter.objects.get_by_name("by-hex")
    await named.increment()
    from durable_objects.testing import evict

    await evict(named)
    by_hex = Counter.objects.get(str(named.id))
    assert by_hex.id.name is None
    assert await by_hex.my_name() == "by-hex"


# -- stubs and arguments -----------------------------------------------------------------


def test_stub_refuses_unknown_private_and_handler_methods():
    stub = Counter.objects.get_by_name("s")
    with pytest.raises(AttributeError, match="no public method 'nope'"):
        stub.nope  # noqa: B018
    with pytest.raises(AttributeError):
        stub._private  # noqa: B018
    for handler in ("alarm", "websocket_message", "websocket_close", "websocket_error"):
        with pytest.raises(AttributeError):
            getattr(stub, handler)


async def test_values_pass_by_value():
    stub = Counter.objects.get_by_name("by-value")
    value = {"list": [1, 2.5, None, True, "s", b"\x00"], "nested": {"k": [("t", 1)]}}
    args, kwargs = await stub.echo(value, 7, flag=False)
    assert args == [
        {"list": [1, 2.5, None, True, "s", b"\x00"], "nested": {"k": [["t", 1]]}},
        7,
    ]
    assert kwargs == {"flag": False}
    item = ["mutable"]
    remembered = await stub.remember(item)
    item.append("changed here")
    assert await stub.remember("next") == [["mutable"], "next"]
    assert remembered == [["mutable"]]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((object(),), {}, "argument 'item' of Counter.remember"),
        (({1, 2},), {}, "set is not serializable"),
        ((2**70,), {}, "integers must fit in 64 bits"),
    ],
)
async def test_unserializable_arguments_are_type_errors_naming_the_argument(args, kwargs, message):
    stub = Counter.objects.get_by_name("args")
    await stub.remember("before")
    with pytest.raises(TypeError, match=message):
        await stub.remember(*args, **kwargs)
    assert await stub.remember("after") == ["before", "after"]


async def test_unserializable_keyword_argument_is_named():
    with pytest.raises(TypeError, match="argument 'flag'"):
        await Counter.objects.get_by_name("kw").echo(flag=object())


async def test_oversized_arguments_are_refused(settings):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "MAX_CALL_SIZE": 1000}
    stub = Plain.objects.get_by_name("big")
    with pytest.raises(ValueError, match="the limit is 1000 bytes"):
        await stub.add("x" * 2000, "")
    assert await stub.add(1, 2) == 3
