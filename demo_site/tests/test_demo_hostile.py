"""The demo site against hostile input (issue 13, items 8 and 10): a real runserver, real
clients. Refused names make no shard, odd paths are 404s, deep or mistyped JSON gets an
error message (never 1011 or a 500), and the per-client limits hold.
"""

import asyncio
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from demo_site.tests.demo_server import (  # noqa: F401 (fixtures)
    Booker,
    DemoServer,
    recv_json,
    shared_demo_server_fixture,
)

ROUTES = ("chat", "board", "poll", "flights", "trial")
# Names no demo page has: markup, beyond Latin-1, too long, a space, a dot-dot.
BAD_NAMES = ("%3Cb%3E", "%D0%B6%E2%82%AC", "x" * 41, "a%20b", "..", "caf%C3%A9")


def shards(server):
    root = Path(server.env["DEMO_VAR_DIR"]) / "durable_objects"
    return sorted(path.name for path in root.rglob("*.sqlite3"))


def ws_url(server, path):
    return server.url.replace("http", "ws") + path


async def closed_with(server, path, headers=None):
    """(code, reason) of a socket the server accepts and closes at once."""
    import websockets

    async with websockets.connect(
        ws_url(server, path), additional_headers={"Origin": server.url, **(headers or {})}
    ) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await recv_json(ws)
        return ws.close_code, ws.close_reason


def status_of(url, data=None, headers=None, opener=None):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with (opener or urllib.request.build_opener()).open(request, timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


async def test_names_the_demo_refuses_never_make_a_shard(shared_demo_server):
    before = shards(shared_demo_server)
    closes = set()
    for _ in range(3):
        for route in ROUTES:
            for name in BAD_NAMES:
                closes.add(await closed_with(shared_demo_server, f"/ws/{route}/{name}/"))
    assert shards(shared_demo_server) == before  # no object was constructed
    # The same refusal for every name: no codec error, no text of the object's.
    assert closes == {(4404, "No such object.")}


async def test_encoded_dot_dot_slash_is_a_404_never_a_500(shared_demo_server):
    for path in ("/ws/chat/..%2F/", "/ws/chat/a%2Fb/", "/ws/nothing/", "/ws/chat/..%2F..%2F/"):
        assert await closed_with(shared_demo_server, path) == (4404, "No such object.")
    base = shared_demo_server.url
    for path in (
        "/static/..%2Fsettings.py",
        "/static/..%2F..%2Fmanage.py",
        "/static/admin/..%2F..%2F..%2Fsettings.py",
        "/chat/..%2F/",
        "/counter/..%2F..%2F/",
        "/objects/chat.ChatRoom/..%2F/state/",
    ):
        assert await asyncio.to_thread(status_of, base + path) == 404, path
    assert await asyncio.to_thread(status_of, base + "/static/admin/css/base.css") == 200


def _voter_cookie(server):
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(server.url + "/poll/hostile/").read()
    return "; ".join(f"{c.name}={c.value}" for c in jar)


async def test_deep_or_mistyped_json_gets_an_error_message_and_the_socket_stays(
    shared_demo_server,
):
    import websockets

    cookie = await asyncio.to_thread(_voter_cookie, shared_demo_server)
    cases = {
        "/ws/chat/hostile/?user=ann": (
            [{"type": "message", "text": {"a": ["b"]}}, {"type": ["message"]}],
            {"type": "message", "text": "still here"},
            "message",
        ),
        "/ws/board/hostile/": (
            [{"type": "stroke", "colour": ["#000000"], "width": 2, "points": [[[[0]]]]}],
            {"type": "clear"},
            "clear",
        ),
        "/ws/poll/hostile/": (
            [{"type": "vote", "choice": ["espresso"]}, {"type": "vote", "choice": {"a": 1}}],
            {"type": "vote", "choice": "tea"},
            "counts",
        ),
        "/ws/trial/hostile/": (
            [{"type": "start", "seconds": [600]}, {"type": {"start": 1}}],
            {"type": "reset"},
            "state",
        ),
    }
    for path, (mistyped, good, answer) in cases.items():
        headers = {"Origin": shared_demo_server.url, "Cookie": cookie}
        async with websockets.connect(
            ws_url(shared_demo_server, path), additional_headers=headers, max_size=None
        ) as ws:
            while True:  # the connect's own messages (history, counts, state)
                try:
                    await recv_json(ws, timeout=0.5)
                except TimeoutError:
                    break
            brackets = 6000 if "board" in path else 1900  # within the chat's and board's size
            frames = [
                "[" * brackets,  # RecursionError inside json.loads
                '{"type": "message", "text": ' + "[" * 300 + "]" * 300 + "}",
                *(json.dumps(bad) for bad in mistyped),
            ]
            for frame in frames:
                await ws.send(frame)
                reply = await recv_json(ws)
                assert reply["type"] == "error", (path, frame[:40], reply)
            await ws.send(json.dumps(good))
            while (reply := await recv_json(ws))["type"] != answer:
                pass


def test_a_flight_booking_with_deeply_nested_json_is_a_400(shared_demo_server):
    booker = Booker(shared_demo_server.url, "DEEP-1")
    token = next(c.value for c in booker.jar if c.name == "csrftoken")
    headers = {"X-CSRFToken": token, "Content-Type": "application/json"}
    for body in ("[" * 999, '{"seat":' * 110 + "1" + "}" * 110, "[" * 9 + "]" * 9):
        status = status_of(
            booker.url + "book/", data=body.encode(), headers=headers, opener=booker.opener
        )
        assert status == 400, body[:20]
    assert booker.book("3A", "Ann")[0] == 200  # the flight works on


# -- per-client limits (a server of its own, with small limits) -------------------------


@pytest.fixture(name="limited_demo_server", scope="module")
def limited_demo_server_fixture(tmp_path_factory):
    server = DemoServer(
        tmp_path_factory.mktemp("limited") / "var",
        DEMO_MAX_SOCKETS_PER_CLIENT="3",
        DEMO_NEW_OBJECTS_PER_MINUTE="3",
    ).start()
    yield server
    server.stop()


def _post_increment(server, name):
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    url = f"{server.url}/counter/{name}/"
    page = opener.open(url).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode({"csrfmiddlewaretoken": token}).encode()
    return status_of(url, data=data, headers={"Referer": url}, opener=opener)


async def test_the_demo_limits_sockets_and_new_objects_per_client(limited_demo_server):
    import websockets

    server = limited_demo_server
    origin = {"Origin": server.url}
    rooms = [
        await websockets.connect(ws_url(server, f"/ws/chat/room{n}/"), additional_headers=origin)
        for n in range(3)
    ]
    for ws in rooms:
        assert (await recv_json(ws))["type"] == "history"
    assert await closed_with(server, "/ws/chat/room0/") == (
        4429,
        "Too many connections from your address.",
    )
    await rooms.pop().close()
    await asyncio.sleep(0.5)  # the server sees the close
    # Three new rooms this minute: a fourth is refused, and makes no shard.
    assert len(shards(server)) == 3
    code, reason = await closed_with(server, "/ws/chat/room3/")
    assert code == 4429 and "new objects" in reason
    assert await asyncio.to_thread(_post_increment, server, "fresh") == 429
    assert len(shards(server)) == 3
    # A room that exists is not new: the client may come back to it.
    async with websockets.connect(
        ws_url(server, "/ws/chat/room2/"), additional_headers=origin
    ) as ws:
        assert (await recv_json(ws))["type"] == "history"
    for ws in rooms:
        await ws.close()
