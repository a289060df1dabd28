"""Sockets and their object in one server process: nothing through the channel layer.

A real daphne or uvicorn process serves tests.support.asgi with a channel layer that
counts what it carries (tests.support.layers); real clients (the websockets package)
check every frame. Without compression, both servers' connections get the ready-made
frames (sockets/frames.py); with per-message deflate (uvicorn), the websockets package
frames them. The cluster's path, where the channel layer still carries them, is in
test_cluster.py.
"""

import asyncio
import gc
import json
from types import SimpleNamespace

import pytest
import websockets
from channels.testing import WebsocketCommunicator

from durable_objects.sockets import collector
from tests.support.servers import free_port, start_server, stop

CLIENTS = [("daphne", None), ("uvicorn", None), ("uvicorn", "deflate")]


@pytest.fixture(params=CLIENTS, ids=["daphne", "uvicorn", "uvicorn-deflate"])
def local(request, tmp_path):
    """A server of its own: its ws:// url, and connect() with the parameter's compression."""
    kind, compression = request.param
    port = free_port()
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.support.settings",
        "DO_TEST_STORAGE_ROOT": str(tmp_path / "objects"),
        "DO_TEST_COUNTING_LAYER": "1",
    }
    process = start_server(kind, "tests.support.asgi:application", port, env)

    def connect(url, **options):
        return websockets.connect(url, compression=compression, **options)

    yield SimpleNamespace(url=f"ws://127.0.0.1:{port}", connect=connect)
    stop(process)


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), 10)


async def text_of(ws):
    return json.loads(await recv(ws))["text"]


async def carried(ws):
    """What the server process's channel layer has carried, by kind and message type."""
    await ws.send("/layer")
    return json.loads(await recv(ws))


async def test_broadcasts_sends_and_closes_never_touch_the_channel_layer(local):
    room = f"{local.url}/ws/room/local/"
    async with (
        local.connect(f"{room}?user=ann&tag=red") as ann,
        local.connect(f"{room}?user=bob&tag=blue") as bob,
        local.connect(f"{room}?user=cat") as cat,
    ):
        await ann.send("hello")
        assert [await text_of(ws) for ws in (ann, bob, cat)] == ["hello"] * 3
        await ann.send("/tag red only-red")
        assert await recv(ann) == "only-red"
        await bob.send("/others from-bob")
        assert [await recv(ann), await recv(cat)] == ["from-bob", "from-bob"]
        await cat.send(b"abc")
        assert await recv(cat) == b"cba"
        await cat.send("last")
        # bob's next frame is "last": the red-only and the excluding broadcasts skipped him
        assert [await text_of(ws) for ws in (ann, bob, cat)] == ["last"] * 3
        await bob.send("/close")
        with pytest.raises(websockets.ConnectionClosed):
            await recv(bob)
        assert (bob.close_code, bob.close_reason) == (4001, "asked to leave")
        kinds = await carried(ann)
        assert not [kind for kind in kinds if kind.split()[1].startswith("do.")], kinds


@pytest.mark.parametrize("size", [1, 125, 126, 127, 65535, 65536, 65537, 300_000])
async def test_frames_of_every_length_arrive_whole(local, size):
    """Text (with a two-byte character at the end) and bytes, to one socket and to all."""
    room = f"{local.url}/ws/room/lengths-{size}/"
    text = "x" * (size - 2) + "é" if size > 1 else "x"
    assert len(text.encode()) == size
    async with (
        local.connect(f"{room}?user=ann") as ann,
        local.connect(f"{room}?user=bob") as bob,
    ):
        await ann.send(f"/echo {text}")
        assert await recv(ann) == text
        await ann.send(f"/shout {text}")
        assert [await recv(ann), await recv(bob)] == [text, text]
        payload = bytes(range(256)) * (size // 256) + b"\x01" * (size % 256)
        await bob.send(payload)
        assert await recv(bob) == payload[::-1]


async def test_a_flood_reaches_every_socket_whole_and_in_order(local):
    room = f"{local.url}/ws/room/flood/"
    clients = [await local.connect(f"{room}?user=u{i}") for i in range(30)]
    try:
        await clients[0].send("/flood 500 300")
        for ws in clients:
            texts = [await recv(ws) for _ in range(500)]
            assert [text[:8] for text in texts] == [f"{i:08d}" for i in range(500)]
            assert {len(text) for text in texts} == {308}
        kinds = await carried(clients[0])
        assert "group_send do.message" not in kinds
    finally:
        await asyncio.gather(*(ws.close() for ws in clients))


@pytest.mark.django_db(transaction=True)
async def test_connected_sockets_are_frozen_out_of_full_collections(settings, monkeypatch):
    from tests.support.asgi import application

    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "WEBSOCKET_GC_FREEZE": True}
    monkeypatch.setattr(collector, "FREEZE_DELAY", 0.05)
    monkeypatch.setattr(collector, "MIN_CHURN", 2)
    collector.reset()
    try:
        clients = []
        for i in range(4):
            communicator = WebsocketCommunicator(application, f"/ws/room/frozen/?user=u{i}")
            assert (await communicator.connect())[0]
            clients.append(communicator)
        await asyncio.sleep(0.2)
        frozen = gc.get_freeze_count()
        assert frozen > 0  # what the sockets hold is out of the collector's walks
        for communicator in clients[:2]:
            await communicator.disconnect()
        await asyncio.sleep(0.2)  # past FREEZE_DELAY without a close: the thaw runs
        # Two of four closed (past MIN_CHURN and a quarter): thawed, collected, frozen again.
        assert collector._state["closed"] == 0
        assert collector._state["frozen"] == 2
        for communicator in clients[2:]:
            await communicator.disconnect()
    finally:
        collector.reset()
    assert gc.get_freeze_count() == 0


async def test_uvicorn_sockets_with_and_without_deflate_share_a_flood_in_order(tmp_path):
    """Uncompressed sockets get the ready-made frames, compressed ones uvicorn's: one room."""
    port = free_port()
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.support.settings",
        "DO_TEST_STORAGE_ROOT": str(tmp_path / "objects"),
    }
    process = start_server("uvicorn", "tests.support.asgi:application", port, env)
    room = f"ws://127.0.0.1:{port}/ws/room/mixed/"
    clients = []
    try:
        for i in range(10):
            compression = None if i % 2 else "deflate"
            ws = await websockets.connect(f"{room}?user=u{i}", compression=compression)
            clients.append(ws)
            assert bool(ws.protocol.extensions) == (compression is not None)  # as negotiated
        await clients[0].send("/flood 300 2000")
        for ws in clients:
            texts = [await recv(ws) for _ in range(300)]
            assert [text[:8] for text in texts] == [f"{i:08d}" for i in range(300)]
            assert {len(text) for text in texts} == {2008}
    finally:
        await asyncio.gather(*(ws.close() for ws in clients))
        stop(process)


def self_signed(directory):
    """(certificate path, key path) of a new self-signed certificate for 127.0.0.1."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_uvicorn_frames_over_tls_arrive_whole(tmp_path):
    """uvicorn's transport encrypts the ready-made frames as it does its own."""
    import ssl

    cert, key = self_signed(tmp_path)
    port = free_port()
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.support.settings",
        "DO_TEST_STORAGE_ROOT": str(tmp_path / "objects"),
    }
    options = ("--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    process = start_server("uvicorn", "tests.support.asgi:application", port, env, *options)
    context = ssl.create_default_context(cafile=str(cert))
    room = f"wss://127.0.0.1:{port}/ws/room/tls/"
    try:
        async with (
            websockets.connect(f"{room}?user=ann", ssl=context, compression=None) as ann,
            websockets.connect(f"{room}?user=bob", ssl=context, compression=None) as bob,
        ):
            for size in (1, 126, 65536, 300_000):
                text = "y" * size
                await ann.send(f"/shout {text}")
                assert [await recv(ann), await recv(bob)] == [text, text]
            await bob.send("hello")
            assert [await text_of(ws) for ws in (ann, bob)] == ["hello"] * 2
    finally:
        stop(process)
