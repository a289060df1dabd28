"""Hostile names, paths, clients and JSON at the edge (issue 13, items 8 and 10).

The consumer is driven with channels.testing.WebsocketCommunicator on the in-memory layer,
the admin with Django's test client; objects are real, and so are their shard files.
The same input against the demo site's real server is in demo_site/tests/test_demo_hostile.py.
"""

import json
import logging

import pytest
from asgiref.sync import async_to_sync
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import RequestFactory
from django.urls import reverse

from durable_objects import clients
from durable_objects.http import decode_request, encode_request
from durable_objects.models import ObjectRecord
from durable_objects.routing import websocket_not_found, websocket_path
from durable_objects.runtime.lifecycle import get_host
from durable_objects.testing import run_in_durable_object
from tests.support.objects import Counter
from tests.support.objects_sockets import Room

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "internal detail: /srv/app/secrets.py line 12"


def only_lowercase(name):
    return name.isascii() and name.isalpha() and name.islower()


def refuse_or_name(scope):
    query = scope["query_string"].decode()
    if query == "raise":
        raise RuntimeError(SECRET)
    return None if query == "none" else query


application = AuthMiddlewareStack(
    URLRouter(
        [
            websocket_path("ws/room/<str:room>/", Room, name="room", valid_name=only_lowercase),
            websocket_path("ws/any/<str:room>/", Room, name="room"),
            websocket_path("ws/by-query/", Room, object_id=refuse_or_name),
            websocket_not_found(),
        ]
    )
)


@pytest.fixture(autouse=True)
def fresh_counts():
    clients.reset()
    yield
    clients.reset()


def shards(storage_root):
    return sorted(path.name for path in storage_root.rglob("*.sqlite3"))


async def open_socket(path, client="10.0.0.1"):
    """Connect; return (communicator, None) if accepted, else (communicator, the close).

    An accepted Room answers "/whoami"; a refused socket's close comes first.
    """
    communicator = WebsocketCommunicator(application, path)
    if client is not None:
        communicator.scope["client"] = (client, 50000)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_to("/whoami")
    message = await communicator.receive_output(2)
    if message["type"] == "websocket.close":
        return communicator, message
    return communicator, None


async def close_of(path, **kwargs):
    communicator, closed = await open_socket(path, **kwargs)
    assert closed is not None, f"{path} was accepted"
    await communicator.disconnect()
    return closed["code"], closed.get("reason", "")


# -- names refused before any object wakes ----------------------------------------------


async def test_names_the_route_refuses_never_construct_an_object_or_make_a_shard(storage_root):
    before = Room.constructions
    for n in range(10):
        for name in (f"Bad{n}", f"has-dash-{n}", "%3Cb%3E", f"{n}"):
            assert await close_of(f"/ws/room/{name}/") == (4404, "No such object.")
    assert Room.constructions == before
    assert shards(storage_root) == []
    communicator, closed = await open_socket("/ws/room/fine/")
    assert closed is None  # a name the route accepts is served as before
    await communicator.disconnect()
    assert len(shards(storage_root)) == 1


async def test_object_id_returning_none_is_closed_with_4404_and_wakes_nothing(storage_root):
    before = Room.constructions
    assert await close_of("/ws/by-query/?none") == (4404, "No such object.")
    assert Room.constructions == before
    assert shards(storage_root) == []


async def test_route_errors_reach_the_log_not_the_client(storage_root, caplog):
    with caplog.at_level(logging.INFO, logger="durable_objects.sockets"):
        code, reason = await close_of("/ws/by-query/?raise")
    assert (code, reason) == (4400, "This address names no object.")
    assert SECRET in caplog.text
    code, reason = await close_of("/ws/any/a\x01b/")  # a control character: ValueError
    assert (code, reason) == (4400, "This address names no object.")
    assert shards(storage_root) == []


async def test_a_connect_that_raises_closes_1011_without_the_error_text(caplog):
    with caplog.at_level(logging.WARNING, logger="durable_objects.sockets"):
        code, reason = await close_of("/ws/any/door/?explode=1")
    assert (code, reason) == (1011, "Internal error")
    assert "the door is stuck" in caplog.text


async def test_a_path_no_route_matches_is_closed_with_4404():
    # "..%2F" decoded into the path: no route matches; Channels alone fails the handshake.
    for path in ("/ws/room/../", "/ws/room/a/b/", "/nothing/here/"):
        assert await close_of(path) == (4404, "No such object.")


# -- paths and names beyond Latin-1 -----------------------------------------------------


async def test_a_name_beyond_latin_1_connects_and_fetch_sees_its_path():
    communicator = WebsocketCommunicator(application, "/ws/any/%D0%B6%E2%82%AC/?user=%D0%B6")
    assert (await communicator.connect())[0]
    await communicator.send_to("/whoami")
    whoami = json.loads(await communicator.receive_from(2))
    await communicator.disconnect()
    assert whoami["attachment"]["user"] == "ж"
    stub = Room.objects.get_by_name("ж€")
    assert await stub.history() == []


async def test_fetch_sees_a_path_and_query_beyond_latin_1():
    response = await Counter.objects.get_by_name("paths").fetch("/ж/€?q=€")
    data = json.loads(response.content)
    assert (data["path"], data["query"]) == ("/ж/€", "€")


def test_a_django_request_beyond_latin_1_round_trips_to_the_object():
    request = RequestFactory().get("/caf\u00e9/\u0436/", {"q": "\u20ac", "r": "a&b"})
    inside = decode_request(encode_request(request))
    assert inside.path == "/caf\u00e9/\u0436/"
    assert inside.GET.dict() == {"q": "\u20ac", "r": "a&b"}


def test_an_upgrade_request_with_raw_bytes_beyond_ascii_in_its_query():
    from durable_objects.sockets.events import upgrade_request

    scope = {"path": "/ws/\u0436/", "query_string": "q=\u0436".encode() + b"&bad=\xff"}
    inside = decode_request(upgrade_request(scope))
    assert inside.path == "/ws/\u0436/"
    assert inside.GET["q"] == "\u0436"
    assert inside.GET["bad"] == "\ufffd"


# -- per-client limits ------------------------------------------------------------------


async def test_sockets_per_client_are_limited_with_4429(settings, storage_root):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "WEBSOCKET_MAX_PER_CLIENT": 2}
    first, _ = await open_socket("/ws/room/limit/")
    second, _ = await open_socket("/ws/room/limit/")
    assert await close_of("/ws/room/limit/") == (4429, "Too many connections from your address.")
    other, closed = await open_socket("/ws/room/limit/", client="10.0.0.2")
    assert closed is None  # another address has its own count
    await first.disconnect()
    again, closed = await open_socket("/ws/room/limit/")
    assert closed is None  # a closed socket gives its place back
    for communicator in (second, other, again):
        await communicator.disconnect()
    assert clients.sockets_of("10.0.0.1") == 0


async def test_refused_sockets_do_not_count_against_the_client(settings):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "WEBSOCKET_MAX_PER_CLIENT": 1}
    for _ in range(5):
        assert (await close_of("/ws/room/Refused/"))[0] == 4404
    communicator, closed = await open_socket("/ws/room/open/")
    assert closed is None
    await communicator.disconnect()


async def test_new_objects_per_client_are_limited_and_wake_nothing(settings, storage_root):
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "NEW_OBJECTS_PER_CLIENT_PER_MINUTE": 3,
    }
    for name in ("one", "two", "three"):
        communicator, closed = await open_socket(f"/ws/room/{name}/")
        assert closed is None
        await communicator.disconnect()
    assert len(shards(storage_root)) == 3
    before = Room.constructions
    for name in ("four", "five", "six", "seven"):
        code, reason = await close_of(f"/ws/room/{name}/")
        assert (code, reason) == (4429, clients_reason())
    assert Room.constructions == before
    assert len(shards(storage_root)) == 3
    # An object with storage is not new: the client may come back to it.
    communicator, closed = await open_socket("/ws/room/two/")
    assert closed is None
    await communicator.disconnect()
    # Another address has its own count.
    communicator, closed = await open_socket("/ws/room/four/", client="10.0.0.9")
    assert closed is None
    await communicator.disconnect()


def clients_reason():
    from durable_objects.sockets.protocol import REASON_TOO_MANY_OBJECTS

    return REASON_TOO_MANY_OBJECTS


def test_new_objects_count_once_per_object_and_expire_after_a_minute(settings):
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "NEW_OBJECTS_PER_CLIENT_PER_MINUTE": 2,
    }
    ids = [Room.objects.id_from_name(f"n{i}") for i in range(3)]
    allow = clients.allow_new_object
    assert allow(Room, ids[0], "c", now=1000.0)
    assert allow(Room, ids[0], "c", now=1001.0)  # the same object counts once
    assert allow(Room, ids[1], "c", now=1002.0)
    assert not allow(Room, ids[2], "c", now=1003.0)
    assert allow(Room, ids[2], "c", now=1061.0)  # the first count has expired
    assert allow(Room, ids[2], "unknown", now=1003.0)
    assert allow(Room, ids[2], None, now=1003.0)  # no address: not limited


def test_limits_are_off_by_default():
    from durable_objects.conf import DEFAULTS

    assert DEFAULTS["WEBSOCKET_MAX_PER_CLIENT"] is None
    assert DEFAULTS["NEW_OBJECTS_PER_CLIENT_PER_MINUTE"] is None
    assert clients.take_socket("10.0.0.1")
    object_id = Room.objects.id_from_name("x")
    assert all(clients.allow_new_object(Room, object_id, "c") for _ in range(100))


# -- JSON in the admin's key-value editor -----------------------------------------------


def make_record(name="json-subject"):
    stub = Counter.objects.get_by_name(name)

    def fill(instance, ctx):
        ctx.storage.put("greeting", "hello")

    async_to_sync(run_in_durable_object)(stub, fill)
    get_host().catalog.flush_sync()
    return stub, ObjectRecord.objects.get(object_id=str(stub.id))


def stored(stub, key):
    return async_to_sync(run_in_durable_object)(
        stub, lambda instance, ctx: ctx.storage.get(key, "<missing>")
    )


@pytest.mark.parametrize(
    "value",
    ["[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000, "[" * 101 + "]" * 101],
    ids=["brackets", "objects", "just-too-deep"],
)
def test_the_entry_form_refuses_deeply_nested_json_clearly(admin_client, value):
    stub, record = make_record()
    edit = reverse("admin:durable_objects_objectrecord_kv_edit", args=[record.pk])
    response = admin_client.post(edit, {"key": "greeting", "value": value})
    assert response.status_code == 200
    assert "nested too deeply" in response.text
    assert stored(stub, "greeting") == "hello"


def test_the_entry_form_still_takes_nested_json_within_the_limit(admin_client):
    stub, record = make_record()
    edit = reverse("admin:durable_objects_objectrecord_kv_edit", args=[record.pk])
    value = "[" * 100 + "]" * 100
    response = admin_client.post(edit, {"key": "deep", "value": value})
    assert response.status_code == 302
    assert stored(stub, "deep") == json.loads(value)
