"""WebSockets end to end: a real daphne process and real clients (the websockets package)."""

import asyncio
import base64
import contextlib
import json
import os
import socket

import pytest
import websockets

from tests.support.servers import free_port, start_daphne, stop


@pytest.fixture
def daphne_server(tmp_path):
    """Start (and restart) daphne serving tests.support.asgi with a storage root of its own."""
    port = free_port()
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.support.settings",
        "DO_TEST_STORAGE_ROOT": str(tmp_path / "daphne-objects"),
    }
    processes = []

    def start(*options):
        processes.append(start_daphne("tests.support.asgi:application", port, env, *options))
        return f"ws://127.0.0.1:{port}"

    def restart():
        """Kill daphne (SIGKILL: its sockets' rows stay in the shards) and start it again."""
        processes[-1].kill()
        processes[-1].wait()
        return start()

    start.restart = restart
    yield start
    for process in processes:
        stop(process)


async def receive_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


async def command(ws, text):
    await ws.send(text)
    return await asyncio.wait_for(ws.recv(), 5)


async def close_codes(ws, seconds=10):
    """The codes the room's websocket_close() recorded, once there are any (asked via ws)."""
    for _ in range(int(seconds / 0.05)):
        closed = json.loads(await command(ws, "/records closed:"))
        if closed:
            return [value[0] for value in closed.values()]
        await asyncio.sleep(0.05)
    return []


async def wait_asleep():
    """Wait past the room's hibernate_after (0.3 s) plus the host's tick."""
    await asyncio.sleep(1.0)


async def test_two_clients_in_one_room_and_history_after_a_restart(daphne_server):
    url = daphne_server()
    async with (
        websockets.connect(f"{url}/ws/room/main/?user=ann") as ann,
        websockets.connect(f"{url}/ws/room/main/?user=bob") as bob,
    ):
        await ann.send("hello bob")
        assert await receive_json(bob) == {"user": "ann", "text": "hello bob"}
        assert await receive_json(ann) == {"user": "ann", "text": "hello bob"}
        await bob.send("hi ann")
        assert await receive_json(ann) == {"user": "bob", "text": "hi ann"}
        assert await receive_json(bob) == {"user": "bob", "text": "hi ann"}
        url = daphne_server.restart()  # killed with ann and bob connected
    async with websockets.connect(f"{url}/ws/room/main/?user=cat") as cat:
        history = [await receive_json(cat), await receive_json(cat)]
        assert await command(cat, "/count") == "1"  # ann's and bob's rows were swept
        assert sorted(await close_codes(cat)) == [1006, 1006]
    assert history == [{"user": "ann", "text": "hello bob"}, {"user": "bob", "text": "hi ann"}]


async def test_hibernation_keeps_clients_tags_and_attachments(daphne_server):
    url = daphne_server()
    ann_url, bob_url = f"{url}/ws/room/nap/?user=ann&tag=vip", f"{url}/ws/room/nap/?user=bob"
    async with websockets.connect(ann_url) as ann, websockets.connect(bob_url) as bob:
        built = int(await command(ann, "/built"))
        await wait_asleep()
        await bob.send("are you there")  # wakes the object: one construction
        assert await receive_json(ann) == {"user": "bob", "text": "are you there"}
        assert await receive_json(bob) == {"user": "bob", "text": "are you there"}
        assert int(await command(ann, "/built")) == built + 1
        whoami = json.loads(await command(ann, "/whoami"))
        assert whoami["tags"] == ["vip"] and whoami["attachment"]["user"] == "ann"
        assert await command(bob, "/count") == "2"
        assert await command(bob, "/count vip") == "1"


async def test_auto_response_and_pings_do_not_wake_the_object(daphne_server):
    url = daphne_server()
    async with websockets.connect(f"{url}/ws/room/auto/?user=ann") as ann:
        await ann.send("/auto ping pong")
        built = int(await command(ann, "/built"))
        await wait_asleep()
        assert await command(ann, "ping") == "pong"
        await asyncio.wait_for(await ann.ping(), 5)  # a protocol ping, answered by daphne
        assert int(await command(ann, "/built")) == built + 1  # only /built woke it
        assert isinstance(json.loads(await command(ann, "/autots")), float)


def raw_client(port, path, receive_buffer=4096):
    """A client that completes the handshake and then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert b" 101 " in response.split(b"\r\n")[0], response
    return sock


async def test_a_slow_client_is_closed_4008_and_nobody_else_loses_a_message(daphne_server):
    url = daphne_server()
    port = int(url.rsplit(":", 1)[1])
    slow = raw_client(port, "/ws/room/slow/?user=slow")
    try:
        async with websockets.connect(f"{url}/ws/room/slow/?user=fast", max_size=None) as fast:
            assert await command(fast, "/count") == "2"
            await fast.send("/flood 600 20000")  # 12 MB: far past every buffer of the slow one
            received = [await asyncio.wait_for(fast.recv(), 10) for _ in range(600)]
            assert [text[:8] for text in received] == [f"{i:08d}" for i in range(600)]
            assert await close_codes(fast) == [4008]
            assert await command(fast, "/count") == "1"
    finally:
        slow.close()


async def test_a_malformed_frame_closes_that_socket_only(daphne_server):
    url = daphne_server()
    port = int(url.rsplit(":", 1)[1])
    async with websockets.connect(f"{url}/ws/room/bad/?user=good") as good:
        bad = raw_client(port, "/ws/room/bad/?user=bad", receive_buffer=65536)
        try:
            assert await command(good, "/count") == "2"
            mask = os.urandom(4)
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"\xff\xfe"))
            bad.sendall(bytes([0x81, 0x80 | 2]) + mask + payload)  # text frame, invalid UTF-8
            bad.settimeout(5)
            data = b""
            with contextlib.suppress(ConnectionResetError):  # autobahn drops it at once
                while len(data) < 4:
                    chunk = bad.recv(64)
                    if not chunk:
                        break
                    data += chunk
            if data:
                assert data[0] == 0x88  # a close frame: 1007, invalid payload
                assert int.from_bytes(data[2:4], "big") == 1007
        finally:
            bad.close()
        assert await close_codes(good) in ([1007], [1006])
        assert await command(good, "/count") == "1"
        await good.send("still fine")
        assert await receive_json(good) == {"user": "good", "text": "still fine"}


async def test_a_client_gone_silent_is_dropped_by_daphnes_pings(daphne_server):
    """The network is gone: no close frame, no pong. daphne's pings find it."""
    url = daphne_server("--ping-interval", "1", "--ping-timeout", "1")
    port = int(url.rsplit(":", 1)[1])
    async with websockets.connect(f"{url}/ws/room/silent/?user=alive") as alive:
        gone = raw_client(port, "/ws/room/silent/?user=gone")  # never answers a ping
        try:
            assert await command(alive, "/count") == "2"
            assert await close_codes(alive) == [1006]  # daphne checks about once a second
            assert await command(alive, "/count") == "1"
        finally:
            gone.close()


async def test_daphne_sends_the_standard_codes_and_the_reason(daphne_server):
    """autobahn refuses 1011 in a server's close; the consumer sends it (and a reason)."""
    url = daphne_server()
    async with websockets.connect(f"{url}/ws/room/codes/?user=ann") as ann:
        await ann.send("/boom now")
        with pytest.raises(websockets.ConnectionClosedError):
            await asyncio.wait_for(ann.recv(), 5)
    assert ann.close_code == 1011
    assert ann.close_reason == "Internal error"
    async with websockets.connect(f"{url}/ws/room/codes/?refuse=404") as refused:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(refused.recv(), 5)
    assert (refused.close_code, refused.close_reason) == (4404, "go away")
