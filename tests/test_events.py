"""Event kinds: their registry, the wire codec, and errors that cross by value."""

import sys
import textwrap

import pytest

from durable_objects import serialization
from durable_objects.admin.operations import AdminOperation
from durable_objects.alarms.events import AlarmDelivery, AlarmRetry
from durable_objects.events import base as events
from durable_objects.events.base import Event, event_kind
from durable_objects.events.calls import Fetch, MethodCall, RunInObject
from durable_objects.events.errors import decode_exception, encode_exception, is_unreachable
from durable_objects.exceptions import (
    UNREACHABLE,
    CallTimeout,
    ObjectUnavailable,
    RemoteError,
)
from durable_objects.http import encode_request
from durable_objects.sockets.events import (
    SocketClose,
    SocketConnect,
    SocketError,
    SocketMessage,
    SocketNotice,
)
from durable_objects.transport.wire import event_from_wire, event_to_wire


@pytest.fixture
def kinds():
    """Forget the kinds a test defines, once it is done."""
    before = dict(events._kinds)
    yield
    events._kinds.clear()
    events._kinds.update(before)


def over_the_wire(event, name="a-name"):
    """event sent to another process: encoded, serialized, deserialized, decoded."""
    data = serialization.loads(serialization.dumps(event_to_wire(event)))
    return event_from_wire({**data, "name": name})


# -- the registry ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("call", MethodCall),
        ("fetch", Fetch),
        ("run", RunInObject),
        ("alarm", AlarmDelivery),
        ("alarm_retry", AlarmRetry),
        ("socket_connect", SocketConnect),
        ("socket_message", SocketMessage),
        ("socket_close", SocketClose),
        ("socket_error", SocketError),
        ("socket_notice", SocketNotice),
        ("admin_operation", AdminOperation),
    ],
)
def test_each_kind_registers_itself_under_its_kind(kind, cls):
    assert event_kind(kind) is cls


def test_a_second_class_of_one_kind_is_an_error(kinds):
    with pytest.raises(RuntimeError, match="Conflicting event kind 'call'"):

        class Impostor(Event):
            kind = "call"

            def to_wire(self):
                return {}

    assert event_kind("call") is MethodCall


def test_a_kind_defined_again_in_its_own_place_replaces_itself_with_a_warning(kinds):
    def define():
        class Reloaded(Event):
            kind = "tests_reloaded"
            local_only = True

        return Reloaded

    first = define()
    with pytest.warns(RuntimeWarning, match="'tests_reloaded' was already registered"):
        second = define()
    assert first is not second and event_kind("tests_reloaded") is second


def test_a_kind_that_crosses_processes_must_define_to_wire(kinds):
    with pytest.raises(TypeError, match=r"must define to_wire\(\) to cross processes"):

        class Mute(Event):
            kind = "tests_mute"

    with pytest.raises(LookupError):
        event_kind("tests_mute")


def test_a_class_without_a_kind_of_its_own_is_not_registered(kinds):
    before = dict(events._kinds)

    class Abstract(Event):
        pass

    assert events._kinds == before


def test_a_kind_defined_in_a_new_module_round_trips(kinds, tmp_path, monkeypatch):
    (tmp_path / "tests_new_kinds.py").write_text(
        textwrap.dedent(
            '''
            from durable_objects.events.base import Event

            class Ping(Event):
                """A kind the codec has never heard of."""

                __slots__ = ("count", "label")
                kind = "tests_ping"

                def __init__(self, count, *, label="", **kwargs):
                    super().__init__(**kwargs)
                    self.count = count
                    self.label = label

                def to_wire(self):
                    return {"count": self.count, "label": self.label}

                def invoke(self, instance):
                    return self.count
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tests_new_kinds", raising=False)
    import tests_new_kinds

    try:
        sent = tests_new_kinds.Ping(3, label="x", chain=("a-1", "b-2"))
        received = over_the_wire(sent)
        assert type(received) is tests_new_kinds.Ping
        assert (received.count, received.label) == (3, "x")
        assert received.chain == ("a-1", "b-2") and received.name == "a-name"
    finally:
        sys.modules.pop("tests_new_kinds", None)


# -- the codec ---------------------------------------------------------------------------


def test_a_method_call_crosses_with_its_method_and_payload():
    payload = serialization.dumps_arguments((1, "two"), {"three": 3})
    received = over_the_wire(MethodCall("add", payload, chain=("t-1",)))
    assert type(received) is MethodCall
    assert (received.method, received.payload, received.chain) == ("add", payload, ("t-1",))


def test_a_fetch_crosses_with_its_request():
    request = {"method": "GET", "path": "/x", "query": "a=1", "headers": {}, "body": b""}
    received = over_the_wire(Fetch(request))
    assert type(received) is Fetch and received.request == request


@pytest.mark.parametrize(
    "event",
    [
        SocketMessage("s-1", "chan", "hello", auto_response_at=1.5),
        SocketClose("s-1", "chan", code=1001, reason="bye", was_clean=False),
        SocketError("s-1", "chan", encode_exception(ValueError("m"))),
        SocketConnect("s-1", "chan", request=encode_request("/"), holder="h", user=None),
        AlarmDelivery(force=True),
        AdminOperation("kv_value", {"key": "k"}),
    ],
    ids=type,
)
def test_the_runtime_kinds_cross_with_their_fields(event):
    received = over_the_wire(event)
    assert type(received) is type(event)
    assert received.to_wire() == event.to_wire()


def test_a_function_run_in_an_object_is_refused_with_a_type_error():
    with pytest.raises(
        TypeError, match="RunInObject cannot be sent to another process: it holds Python"
    ):
        event_to_wire(RunInObject(lambda instance, ctx: None))


def test_a_local_only_kind_is_refused_with_a_type_error():
    notice = SocketNotice("s-1", "chan", "websocket_error", (ValueError("live"),))
    with pytest.raises(TypeError, match="SocketNotice cannot be sent to another process"):
        event_to_wire(notice)


def test_a_subclass_without_a_kind_of_its_own_cannot_cross():
    class Traced(MethodCall):
        pass

    with pytest.raises(TypeError, match="Traced has no kind of its own"):
        event_to_wire(Traced("m", b""))


def test_an_unknown_kind_on_the_wire_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown event kind 'nope': no Event subclass"):
        event_from_wire({"kind": "nope", "fields": {}, "chain": []})


def test_a_local_only_kind_on_the_wire_is_refused():
    with pytest.raises(ValueError, match="'run' runs only in the process that made it"):
        event_from_wire({"kind": "run", "fields": {"fn": None}, "chain": []})


# -- errors by value ---------------------------------------------------------------------


def test_an_encoded_error_says_whether_it_is_retryable():
    assert encode_exception(ObjectUnavailable("gone"))["retryable"] is True
    assert encode_exception(ValueError("bad"))["retryable"] is False


def test_a_decoded_error_keeps_retryable():
    decoded = decode_exception(encode_exception(CallTimeout("slow")))
    assert isinstance(decoded, CallTimeout) and decoded.retryable and decoded.remote
    assert decode_exception(encode_exception(KeyError("k"))).retryable is False


def test_retryable_survives_a_type_the_caller_cannot_rebuild():
    class Flaky(Exception):
        retryable = True

    data = {**encode_exception(Flaky("later")), "type": "not.imported.Flaky"}
    decoded = decode_exception(data)
    assert isinstance(decoded, RemoteError) and decoded.retryable is True
    assert str(decoded) == "Flaky: later"


def test_an_error_encoded_without_retryable_decodes_as_not_retryable():
    data = encode_exception(LookupError("old sender"))
    del data["retryable"]
    assert decode_exception(data).retryable is False


def test_every_unreachable_error_is_retryable_and_recognised_encoded():
    assert {cls.__name__ for cls in UNREACHABLE} == {
        "CallTimeout",
        "ObjectUnavailable",
        "ObjectReset",
        "FencedError",
    }
    for cls in UNREACHABLE:
        assert cls.retryable
        assert is_unreachable(encode_exception(cls("x")))
    assert not is_unreachable(encode_exception(ValueError("a handler's own")))
