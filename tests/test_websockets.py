"""WebSockets at unit level: the consumer, the object's socket API and their limits.

Driven by channels.testing.WebsocketCommunicator on the in-memory channel layer; the
tests with a real daphne process and real clients are in test_websockets_daphne.py.
"""

import asyncio
import json
import sqlite3

import pytest
from channels.testing import WebsocketCommunicator

from durable_objects.runtime.lifecycle import get_host
from durable_objects.sockets import presence
from tests.support.asgi import application
from tests.support.objects_sockets import Open, Room

pytestmark = pytest.mark.django_db(transaction=True)


async def connect(path, **kwargs):
    communicator = WebsocketCommunicator(application, path, **kwargs)
    connected, code = await communicator.connect()
    assert connected, code
    return communicator


async def receive_json(communicator, timeout=2):
    return json.loads(await communicator.receive_from(timeout))


async def close_code(communicator, timeout=2):
    message = await communicator.receive_output(timeout)
    assert message["type"] == "websocket.close", message
    return message.get("code")


async def test_two_clients_see_each_others_messages():
    ann = await connect("/ws/room/lobby/?user=ann")
    bob = await connect("/ws/room/lobby/?user=bob")
    await ann.send_to("hello")
    assert await receive_json(ann) == {"user": "ann", "text": "hello"}
    assert await receive_json(bob) == {"user": "ann", "text": "hello"}
    await bob.send_to("hi ann")
    assert await receive_json(ann) == {"user": "bob", "text": "hi ann"}
    assert await receive_json(bob) == {"user": "bob", "text": "hi ann"}
    await ann.disconnect()
    await bob.disconnect()


def shard_file(storage_root, name):
    object_id = Room.objects.id_from_name(name)
    hex_id = str(object_id)
    return storage_root / "tests" / "Room" / hex_id[:2] / f"{hex_id}.sqlite3"


async def records(name, prefix):
    return await Room.objects.get_by_name(name).records(prefix)


def consumer_of(name, user):
    """The consumer of the Room socket whose query string is user=<user>."""
    stub = Room.objects.get_by_name(name)
    (consumer,) = [
        consumer
        for _, consumer in presence.consumers_of(str(stub.id))
        if consumer.scope["query_string"] == f"user={user}".encode()
    ]
    return consumer


async def test_history_is_replayed_to_a_new_client():
    ann = await connect("/ws/room/hist/?user=ann")
    await ann.send_to("one")
    await ann.send_to("two")
    assert (await receive_json(ann))["text"] == "one"
    assert (await receive_json(ann))["text"] == "two"
    bob = await connect("/ws/room/hist/?user=bob")
    assert [(await receive_json(bob))["text"] for _ in range(2)] == ["one", "two"]
    await ann.disconnect()
    await bob.disconnect()


async def test_a_message_leaves_only_after_its_write_is_durable(storage_root):
    ann = await connect("/ws/room/gate/?user=ann")
    await ann.send_to("committed first")
    received = await receive_json(ann)
    # Another connection sees the row the moment the message arrives: it was committed.
    with sqlite3.connect(shard_file(storage_root, "gate")) as other:
        rows = other.execute("SELECT text FROM messages").fetchall()
    assert received["text"] == "committed first"
    assert rows == [("committed first",)]
    await ann.disconnect()


async def test_a_failing_handler_closes_1011_and_tells_the_object():
    ann = await connect("/ws/room/err/?user=ann")
    bob = await connect("/ws/room/err/?user=bob")
    await ann.send_to("/boom now")
    assert await close_code(ann) == 1011
    # The failed event's write and message are gone; bob and the object carry on.
    await bob.send_to("still here")
    assert await receive_json(bob) == {"user": "bob", "text": "still here"}
    stub = Room.objects.get_by_name("err")
    assert [row["text"] for row in await stub.history()] == ["still here"]
    errors = await records("err", "error:")
    assert list(errors.values()) == ["ValueError: boom: now"]
    assert await bob.receive_nothing(0.1)
    await bob.disconnect()


async def test_a_socket_the_object_refuses_is_closed_with_4000_plus_status():
    communicator = WebsocketCommunicator(application, "/ws/room/door/?refuse=404")
    connected, _ = await communicator.connect()
    assert connected
    assert await close_code(communicator) == 4404
    default = WebsocketCommunicator(application, "/ws/room/door/?refuse=200")
    await default.connect()
    assert await close_code(default) == 4403


async def test_a_connect_that_raises_is_closed_with_1011():
    communicator = WebsocketCommunicator(application, "/ws/room/door/?explode=1")
    await communicator.connect()
    assert await close_code(communicator) == 1011
    assert await Room.objects.get_by_name("door").records("") == {}


async def test_a_route_that_names_no_object_is_closed_with_4400():
    communicator = WebsocketCommunicator(application, "/ws/by-query/")  # empty name
    await communicator.connect()
    assert await close_code(communicator) == 4400


async def test_tags_and_exclude_choose_the_receivers():
    red = await connect("/ws/room/tags/?user=red&tag=red&tag=warm")
    blue = await connect("/ws/room/tags/?user=blue&tag=blue")
    await blue.send_to("/tag red for red only")
    assert await red.receive_from(2) == "for red only"
    await blue.send_to("/count red")
    assert await blue.receive_from(2) == "1"
    await blue.send_to("/count")
    assert await blue.receive_from(2) == "2"
    await red.send_to("/whoami")
    whoami = await receive_json(red)
    assert whoami["tags"] == ["red", "warm"] and whoami["attachment"]["user"] == "red"
    await red.send_to("/others not for red")
    assert await blue.receive_from(2) == "not for red"
    assert await red.receive_nothing(0.1)
    await red.disconnect()
    await blue.disconnect()


async def test_bytes_reach_the_handler_as_bytes():
    ann = await connect("/ws/room/bytes/?user=ann")
    await ann.send_to(bytes_data=b"\x00\x01abc")
    assert await ann.receive_from(2) == b"cba\x01\x00"
    await ann.disconnect()


async def test_messages_of_one_socket_arrive_in_order():
    ann = await connect("/ws/room/order/?user=ann")
    bob = await connect("/ws/room/order/?user=bob")
    for i in range(300):
        await ann.send_to(f"m{i}")
    texts = [(await receive_json(bob))["text"] for _ in range(300)]
    assert texts == [f"m{i}" for i in range(300)]
    await ann.disconnect()
    await bob.disconnect()


async def test_the_object_closes_a_socket():
    ann = await connect("/ws/room/bye/?user=ann")
    await ann.send_to("/close")
    assert await close_code(ann) == 4001
    bob = await connect("/ws/room/bye/?user=bob")
    await bob.send_to("/count")
    assert await bob.receive_from(2) == "1"
    assert await records("bye", "closed:") == {}  # the object closed it: no websocket_close
    await bob.disconnect()


async def test_a_client_close_reaches_websocket_close():
    ann = await connect("/ws/room/leave/?user=ann")
    await ann.disconnect(code=4321)
    for _ in range(50):
        closed = await records("leave", "closed:")
        if closed:
            break
        await asyncio.sleep(0.02)
    assert list(closed.values()) == [[4321, "", True]]


async def test_a_message_over_the_limit_closes_1009(settings):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "WEBSOCKET_MAX_MESSAGE_SIZE": 1000}
    ann = await connect("/ws/room/big/?user=ann")
    await ann.send_to("x" * 1001)
    assert await close_code(ann) == 1009
    await asyncio.sleep(0.05)
    closed = await records("big", "closed:")
    assert [value[0] for value in closed.values()] == [1009]
    assert await Room.objects.get_by_name("big").history() == []


async def test_a_stub_call_broadcasts_to_the_sockets():
    ann = await connect("/ws/room/stub/?user=ann")
    assert await Room.objects.get_by_name("stub").say("from a view") == 1
    assert await receive_json(ann) == {"user": "stub", "text": "from a view"}
    await ann.disconnect()


async def test_messages_after_the_object_closed_the_socket_are_dropped():
    ann = await connect("/ws/room/late/?user=ann")
    await ann.send_to("/close")
    await ann.send_to("too late")
    assert await close_code(ann) == 4001
    assert await Room.objects.get_by_name("late").history() == []


async def test_a_message_to_an_object_without_storage_runs_no_sql():
    ann = await connect("/ws/open/")
    await ann.send_to("first")  # the first message reads the socket's row
    assert await ann.receive_from(2) == "first"
    activation = get_host().activations[Open.objects.id_from_name("the-open-one").key]
    statements = []
    activation.shard.conn.set_trace_callback(statements.append)
    try:
        await ann.send_to("second")
        assert await ann.receive_from(2) == "second"
    finally:
        activation.shard.conn.set_trace_callback(None)
    assert statements == []
    await ann.disconnect()


def count_runners(activation):
    """A list that gains an entry each time activation starts its runner task."""
    started = []
    start_runner = activation._start_runner

    def counted():
        started.append(True)
        start_runner()

    activation._start_runner = counted
    return started


async def test_a_message_to_an_idle_object_runs_in_its_consumers_task():
    ann = await connect("/ws/room/inline/?user=ann")
    await ann.send_to("/echo warm")
    assert await ann.receive_from(2) == "warm"
    activation = get_host().activations[Room.objects.id_from_name("inline").key]
    started = count_runners(activation)
    await ann.send_to("/echo one")  # a sync handler that only sends: no runner task
    assert await ann.receive_from(2) == "one"
    await ann.send_to("hello")  # one that writes and broadcasts: inline too
    assert await receive_json(ann) == {"user": "ann", "text": "hello"}
    assert started == []
    assert await Room.objects.get_by_name("inline").history() == [{"user": "ann", "text": "hello"}]
    await ann.disconnect()


async def test_messages_local_consumers_can_take_need_no_sending_task():
    ann = await connect("/ws/room/handed/?user=ann")
    bob = await connect("/ws/room/handed/?user=bob")
    await ann.send_to("/echo warm")
    assert await ann.receive_from(2) == "warm"
    outbox = get_host().outbox
    drains = []
    drain = outbox._drain

    def counted(object_id, queue, waiting=None):
        drains.append(object_id)
        return drain(object_id, queue, waiting)

    outbox._drain = counted
    try:
        await ann.send_to("/echo one")  # a send to one socket
        assert await ann.receive_from(2) == "one"
        await ann.send_to("hello")  # a broadcast to both
        assert (
            await receive_json(ann) == await receive_json(bob) == {"user": "ann", "text": "hello"}
        )
    finally:
        del outbox._drain
    assert drains == []
    await ann.disconnect()
    await bob.disconnect()


async def test_a_message_to_an_async_handler_runs_in_the_objects_runner():
    ann = await connect("/ws/open/")
    await ann.send_to("first")
    assert await ann.receive_from(2) == "first"
    activation = get_host().activations[Open.objects.id_from_name("the-open-one").key]
    started = count_runners(activation)
    await ann.send_to("second")
    assert await ann.receive_from(2) == "second"
    assert started == [True]
    await ann.disconnect()


async def test_a_close_in_an_event_that_fails_keeps_the_socket():
    ann = await connect("/ws/room/undo/?user=ann")
    await ann.send_to("/echo one")  # known to be open from here on
    assert await ann.receive_from(2) == "one"
    with pytest.raises(ValueError, match="changed my mind"):
        await Room.objects.get_by_name("undo").close_all_then_fail()
    await ann.send_to("/echo two")
    assert await ann.receive_from(2) == "two"
    await ann.send_to("/close")
    await ann.send_to("/echo three")  # after a close that committed: dropped
    assert await close_code(ann) == 4001
    assert await ann.receive_nothing(0.2)


async def test_an_object_without_fetch_accepts_every_socket():
    ann = await connect("/ws/open/")
    await ann.send_to("echo")
    assert await ann.receive_from(2) == "echo"
    await ann.disconnect()


async def test_hibernation_keeps_sockets_tags_and_attachments():
    from durable_objects.testing import is_active

    ann = await connect("/ws/room/nap/?user=ann&tag=t1")
    bob = await connect("/ws/room/nap/?user=bob")
    stub = Room.objects.get_by_name("nap")
    await wait_until_asleep(stub)
    built = Room.constructions
    await ann.send_to("wake up")
    assert await receive_json(bob) == {"user": "ann", "text": "wake up"}
    assert await receive_json(ann) == {"user": "ann", "text": "wake up"}
    assert Room.constructions == built + 1
    assert is_active(stub)
    await ann.send_to("/whoami")
    whoami = await receive_json(ann)
    assert whoami["tags"] == ["t1"] and whoami["attachment"]["user"] == "ann"
    await ann.send_to("/count")
    assert await ann.receive_from(2) == "2"
    await ann.disconnect()
    await bob.disconnect()


async def wait_until_asleep(stub):
    from durable_objects.testing import is_active

    for _ in range(200):
        if not is_active(stub):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the object did not hibernate")


async def test_auto_response_answers_without_waking_the_object():
    ann = await connect("/ws/room/auto/?user=ann")
    await ann.send_to("/auto ping pong")
    await ann.send_to("/count")  # in order after /auto: the consumer knows the pair now
    assert await ann.receive_from(2) == "1"
    stub = Room.objects.get_by_name("auto")
    await wait_until_asleep(stub)
    built = Room.constructions
    await ann.send_to("ping")
    assert await ann.receive_from(2) == "pong"
    assert Room.constructions == built
    await ann.send_to("/autots")
    stamp = json.loads(await ann.receive_from(2))
    assert isinstance(stamp, float)
    # A newcomer gets the pair when it is accepted.
    bob = await connect("/ws/room/auto/?user=bob")
    await bob.send_to("ping")
    assert await bob.receive_from(2) == "pong"
    await ann.disconnect()
    await bob.disconnect()


async def test_a_socket_whose_consumer_is_gone_leaves_get_websockets():
    from durable_objects.testing import evict

    ann = await connect("/ws/room/ghost/?user=ann")
    bob = await connect("/ws/room/ghost/?user=bob")
    stub = Room.objects.get_by_name("ghost")
    # As if ann's process had died: its consumer is gone without a close.
    ann_id = consumer_of("ghost", "ann").socket_id
    presence.unregister(ann_id, str(stub.id))
    await evict(stub)
    await bob.send_to("/count")
    assert await bob.receive_from(2) == "1"
    closed = await records("ghost", "closed:")
    assert closed == {f"closed:{ann_id}": [1006, "Connection lost", False]}
    await bob.disconnect()
    await ann.disconnect()


async def test_a_consumer_that_stops_taking_messages_is_closed_4008(settings):
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "durable_objects.layers.InProcessChannelLayer",
            "CONFIG": {"capacity": 5},
        }
    }
    channel_layers.backends.clear()
    try:
        ann = await connect("/ws/room/stuck/?user=ann")
        bob = await connect("/ws/room/stuck/?user=bob")
        bob_consumer = consumer_of("stuck", "bob")
        blocked = asyncio.Event()

        async def stuck(message):
            await blocked.wait()

        bob_consumer.do_message = stuck  # bob's consumer takes one message, then hangs
        await ann.send_to("/flood 40")
        texts = [await ann.receive_from(3) for _ in range(40)]
        assert texts == [f"{i:08d}" for i in range(40)]  # ann loses nothing
        assert await close_code(bob) == 4008
        blocked.set()
        await asyncio.sleep(0.05)
        closed = await records("stuck", "closed:")
        assert [value[0] for value in closed.values()] == [4008]
    finally:
        channel_layers.backends.clear()


async def send_to_consumer(name, user, message):
    from channels.layers import get_channel_layer

    consumer = consumer_of(name, user)
    sequence = consumer.sequence
    message = {**message, "gen": sequence.gen}
    await get_channel_layer().send(consumer.channel_name, message)
    return sequence


async def test_a_gap_in_the_numbers_closes_4008():
    ann = await connect("/ws/room/gap/?user=ann")
    await ann.send_to("first")
    assert (await receive_json(ann))["text"] == "first"
    # A broadcast numbered two ahead: the one between was lost on the way.
    sequence = await send_to_consumer("gap", "ann", {"type": "do.message", "b": 3, "text": "x"})
    assert sequence.b == 1
    assert await close_code(ann) == 4008


async def test_a_sync_that_does_not_match_closes_4008():
    ann = await connect("/ws/room/sync/?user=ann")
    await ann.send_to("first")
    assert (await receive_json(ann))["text"] == "first"
    await send_to_consumer("sync", "ann", {"type": "do.sync", "b": 2})
    assert await close_code(ann) == 4008


async def test_a_matching_sync_changes_nothing():
    ann = await connect("/ws/room/sync-ok/?user=ann")
    await ann.send_to("first")
    assert (await receive_json(ann))["text"] == "first"
    await send_to_consumer("sync-ok", "ann", {"type": "do.sync", "b": 1})
    await ann.send_to("second")
    assert (await receive_json(ann))["text"] == "second"
    await ann.disconnect()


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("self.ctx.accept_websocket(request.websocket, ['t'] * 2)", "distinct"),
        ("self.ctx.accept_websocket(request.websocket, [str(i) for i in range(11)])", "at most"),
        ("self.ctx.accept_websocket(request.websocket, ['x' * 257])", "1 to 256"),
        ("self.ctx.accept_websocket(request.websocket, 'abc')", "not a string"),
        ("request.websocket.send('before accept')", "Accept the WebSocket"),
    ],
)
async def test_bad_accepts_are_clear_errors(code, expected):
    from durable_objects.testing import run_in_durable_object

    stub = Room.objects.get_by_name("bad-accept")

    def attempt(instance, ctx):
        class Request:
            websocket = instance.ctx._activation.sockets.handle("s1", "c1")

        request = Request()
        instance.ctx._activation.sockets.pending["s1"] = presence.HOLDER
        try:
            exec(code, {"self": instance, "request": request})
        finally:
            instance.ctx._activation.sockets.pending.pop("s1", None)

    with pytest.raises((ValueError, TypeError, RuntimeError), match=expected):
        await run_in_durable_object(stub, attempt)


async def test_attachment_limits():
    ann = await connect("/ws/room/attach/?user=ann")
    from durable_objects.testing import run_in_durable_object

    stub = Room.objects.get_by_name("attach")

    def too_big(instance, ctx):
        ctx.get_websockets()[0].serialize_attachment("x" * 17000)

    def unserializable(instance, ctx):
        ctx.get_websockets()[0].serialize_attachment(object())

    with pytest.raises(ValueError, match="16384"):
        await run_in_durable_object(stub, too_big)
    with pytest.raises(TypeError, match="not serializable"):
        await run_in_durable_object(stub, unserializable)
    await ann.send_to("/whoami")
    assert (await receive_json(ann))["attachment"]["user"] == "ann"
    await ann.disconnect()


async def test_sending_outside_an_event_or_bad_payloads_are_errors():
    from durable_objects.testing import run_in_durable_object

    ann = await connect("/ws/room/payload/?user=ann")
    stub = Room.objects.get_by_name("payload")

    def bad_type(instance, ctx):
        ctx.broadcast({"not": "text"})

    def bad_code(instance, ctx):
        ctx.get_websockets()[0].close(1006)

    with pytest.raises(TypeError, match="str or bytes"):
        await run_in_durable_object(stub, bad_type)
    with pytest.raises(ValueError, match="Close code"):
        await run_in_durable_object(stub, bad_code)
    handles = await run_in_durable_object(stub, lambda instance, ctx: ctx.get_websockets())
    with pytest.raises(RuntimeError, match="inside one of the object's events|gone"):
        handles[0].send("from outside")
    await ann.disconnect()


def test_sequence_numbers():
    from durable_objects.sockets.protocol import Sequence

    seq = Sequence("g1", b=4, d=0)
    assert seq.accept({"gen": "g1", "b": 5})
    assert seq.accept({"gen": "g1", "b": 5, "d": 1})  # direct: next d, the b already seen
    assert not seq.accept({"gen": "g1", "b": 5, "d": 3})  # direct 2 was lost
    assert not seq.accept({"gen": "g1", "b": 7})  # broadcast 6 was lost
    assert not Sequence("g1", b=5, d=1).accept({"gen": "g1", "b": 6, "d": 2})  # b 6 missed
    fresh = Sequence("g1", b=9, d=9)
    assert fresh.accept({"gen": "g2", "b": 1})  # another host numbers from 1
    assert (fresh.gen, fresh.b, fresh.d) == ("g2", 1, 0)
    assert not Sequence("g1").accept({"gen": "g2", "b": 2})
    assert Sequence("g1", b=5).accept({"gen": "g1", "b": 5}) is None  # before it was accepted


async def test_clients_joining_a_busy_room_are_not_closed():
    talker = await connect("/ws/room/busy/?user=talker")
    await talker.send_to("/flood 300")
    # They join while the 300 broadcasts are still being sent: each gets those sent
    # after it was accepted, in order, and none of those counted before it.
    joiners = [await connect(f"/ws/room/busy/?user=j{i}") for i in range(20)]
    await asyncio.sleep(1.2)  # past the SYNC: all still open
    for joiner in [*joiners, talker]:
        await joiner.send_to("/count")
    for communicator in [*joiners, talker]:
        texts = []
        while not texts or texts[-1] != "21":
            message = await communicator.receive_output(2)
            assert message["type"] == "websocket.send", message
            texts.append(message["text"])
        flood = [int(text) for text in texts[:-1]]
        assert flood == list(range(flood[0], 300)) if flood else True
        await communicator.disconnect()


async def test_a_close_frame_without_a_code_is_1005():
    from tests.support.objects_sockets import Open

    ann = await connect("/ws/open/")
    await ann.send_to("hi")
    assert await ann.receive_from(2) == "hi"
    await ann.disconnect(code=None)
    stub = Open.objects.get_by_name("the-open-one")
    for _ in range(50):
        if await stub.last_close() == 1005:
            break
        await asyncio.sleep(0.02)
    assert await stub.last_close() == 1005
    assert Open.closes[-1] == (1005, True)


async def test_a_close_handler_that_raises_leaves_the_socket_gone():
    from durable_objects.testing import evict
    from tests.support.objects_sockets import Open

    ann = await connect("/ws/open/")
    await ann.send_to("hi")
    assert await ann.receive_from(2) == "hi"
    stub = Open.objects.get_by_name("the-open-one")
    before = len(Open.closes)
    await ann.disconnect(code=4999)
    for _ in range(50):
        if len(Open.closes) > before:
            break
        await asyncio.sleep(0.02)
    assert await stub.count() == 0
    assert await stub.last_close() is None  # the handler's write was rolled back
    await evict(stub)
    assert await stub.count() == 0  # and no second websocket_close at the next activation
    assert Open.closes[before:] == [(4999, True)]


async def test_a_socket_message_waits_its_turn_past_call_timeout(settings):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "CALL_TIMEOUT": 0.2}
    ann = await connect("/ws/open/")
    await ann.send_to("nap 0.5")
    await ann.send_to("after the nap")
    assert await ann.receive_from(2) == "nap 0.5"
    assert await ann.receive_from(2) == "after the nap"
    await ann.disconnect()


async def test_an_empty_message_is_refused():
    from durable_objects.testing import run_in_durable_object

    ann = await connect("/ws/room/empty/?user=ann")
    stub = Room.objects.get_by_name("empty")

    def send_empty(instance, ctx):
        ctx.get_websockets()[0].send("")

    with pytest.raises(ValueError, match="empty"):
        await run_in_durable_object(stub, send_empty)
    await ann.disconnect()


def test_websocket_path_needs_one_way_to_name_the_object():
    from django.core.exceptions import ImproperlyConfigured

    from durable_objects.routing import websocket_path

    with pytest.raises(ImproperlyConfigured, match="exactly one"):
        websocket_path("ws/x/", Room)
    with pytest.raises(ImproperlyConfigured, match="exactly one"):
        websocket_path("ws/x/<str:n>/", Room, name="n", object_id=lambda scope: "n")


async def test_the_object_sees_the_logged_in_user():
    from asgiref.sync import sync_to_async
    from django.contrib.auth.models import User
    from django.test import Client

    def log_in():
        User.objects.create_user("carol", password="pw")
        client = Client()
        assert client.login(username="carol", password="pw")
        return client.cookies["sessionid"].value

    session = await sync_to_async(log_in)()
    cookie = [(b"cookie", f"sessionid={session}".encode())]
    carol = await connect("/ws/room/auth/", headers=cookie)
    await carol.send_to("/whoami")
    assert (await receive_json(carol))["attachment"]["user"] == "carol"
    anon = await connect("/ws/room/auth/")
    await anon.send_to("/whoami")
    assert (await receive_json(anon))["attachment"]["user"] == "anon"
    await carol.disconnect()
    await anon.disconnect()
