"""The demo site served by daphne through ``manage.py runserver``, as the README runs it."""

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import pytest

from demo_site.tests.demo_server import (  # noqa: F401 (fixtures)
    REPO,
    Booker,
    demo_server_fixture,
    recv_json,
    shared_demo_server_fixture,
)


def post_increment(opener, url):
    page = opener.open(url).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode({"csrfmiddlewaretoken": token}).encode()
    request = urllib.request.Request(url, data=data, headers={"Referer": url})
    return opener.open(request).read().decode()


def shown_value(page):
    return int(re.search(r'<p id="value" class="count">(\d+)</p>', page).group(1))


def test_demo_counter_counts_and_survives_a_restart(demo_server):
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    assert "django-durable-objects" in opener.open(demo_server.url + "/").read().decode()
    url = demo_server.url + "/counter/home/"
    assert shown_value(opener.open(url).read().decode()) == 0
    assert shown_value(post_increment(opener, url)) == 1
    assert shown_value(post_increment(opener, url)) == 2
    demo_server.restart()
    page = opener.open(url).read().decode()
    assert shown_value(page) == 2
    assert "a5c9922c0d32b69a8d8a58ebd55a8a14037b10e9fd81678f274df0782f94bfce" in page


def test_demo_pages_refuse_names_that_are_not_slugs(shared_demo_server):
    for path in ("/chat/a%20b/", "/board/%3Cscript%3E/", "/poll/" + "x" * 41 + "/"):
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(shared_demo_server.url + path)
        assert raised.value.code == 404


async def test_demo_chat_through_runserver(shared_demo_server):
    """The README's command serves the chat room's WebSockets (daphne's runserver)."""
    import websockets

    base = shared_demo_server.url
    page = urllib.request.urlopen(base + "/chat/lobby/").read().decode()
    assert "Chat room" in page
    url = base.replace("http", "ws") + "/ws/chat/lobby/"
    origin = {"Origin": base}
    hostile = "<script>alert(1)</script>"
    async with (
        websockets.connect(url + "?user=ann", additional_headers=origin) as ann,
        websockets.connect(url + "?user=bob", additional_headers=origin) as bob,
    ):
        assert await recv_json(ann) == {"type": "history", "messages": []}
        assert await recv_json(bob) == {"type": "history", "messages": []}
        await ann.send(json.dumps({"type": "message", "text": hostile}))
        seen = await recv_json(bob)
        assert (seen["type"], seen["user"], seen["text"]) == ("message", "ann", hostile)
        assert (await recv_json(ann))["text"] == hostile
        # Refused, to the sender alone, and nothing stored: too long, wrong type, not JSON.
        for bad in (
            json.dumps({"type": "message", "text": "x" * 501}),
            json.dumps({"type": "message", "text": ["a"]}),
            "not json",
            json.dumps({"type": "message", "text": "x" * 100_000}),
        ):
            await ann.send(bad)
            assert (await recv_json(ann))["type"] == "error"
    async with websockets.connect(url + "?user=cat", additional_headers=origin) as cat:
        history = await recv_json(cat)
        assert [(m["user"], m["text"]) for m in history["messages"]] == [("ann", hostile)]
    # A room whose name no page can have (not 1-40 letters, digits, - or _) is refused.
    async with websockets.connect(
        base.replace("http", "ws") + "/ws/chat/%3Cb%3E/", additional_headers=origin
    ) as odd:
        with pytest.raises(websockets.ConnectionClosed):
            await recv_json(odd)
        assert odd.close_code == 4404
    # A page of another origin is refused by AllowedHostsOriginValidator.
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(url, additional_headers={"Origin": "http://evil.example"})


async def test_demo_chat_limits_how_fast_one_socket_may_post(shared_demo_server):
    import websockets

    url = shared_demo_server.url.replace("http", "ws") + "/ws/chat/fast/?user=ann"
    async with websockets.connect(
        url, additional_headers={"Origin": shared_demo_server.url}
    ) as ann:
        await recv_json(ann)
        for n in range(20):
            await ann.send(json.dumps({"type": "message", "text": f"m{n}"}))
        kinds = [(await recv_json(ann))["type"] for _ in range(20)]
    assert "error" in kinds
    assert 0 < kinds.count("message") < 20


async def test_demo_poll_counts_one_vote_per_voter(shared_demo_server):
    import websockets

    ws_url = shared_demo_server.url.replace("http", "ws") + "/ws/poll/coffee/"
    voters = []
    for _ in range(2):
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(shared_demo_server.url + "/poll/coffee/").read()
        voters.append("; ".join(f"{c.name}={c.value}" for c in jar))
    headers = [{"Origin": shared_demo_server.url, "Cookie": cookie} for cookie in voters]
    async with (
        websockets.connect(ws_url, additional_headers=headers[0]) as ann,
        websockets.connect(ws_url, additional_headers=headers[1]) as bob,
    ):
        for ws in (ann, bob):
            assert (await recv_json(ws))["total"] == 0
            assert await recv_json(ws) == {"type": "yours", "choice": None}
        await ann.send(json.dumps({"type": "vote", "choice": "espresso"}))
        await ann.send(json.dumps({"type": "vote", "choice": "filter"}))  # changes it
        await bob.send(json.dumps({"type": "vote", "choice": "filter"}))
        await bob.send(json.dumps({"type": "vote", "choice": "<b>decaf</b>"}))
        while (message := await recv_json(bob))["type"] != "error":
            pass
        assert "Choose one of" in message["message"]
        while (await recv_json(ann)) != {"type": "yours", "choice": "filter"}:
            pass
    async with websockets.connect(ws_url, additional_headers=headers[0]) as again:
        counts = await recv_json(again)
        assert counts["total"] == 2
        assert counts["counts"]["filter"] == 2
        assert await recv_json(again) == {"type": "yours", "choice": "filter"}
    # Without the page's signed cookie there is no vote: refused with 4403.
    async with websockets.connect(
        ws_url, additional_headers={"Origin": shared_demo_server.url}
    ) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await recv_json(ws)
        assert ws.close_code == 4403


def test_demo_rate_limiter_allows_a_burst_then_refuses(shared_demo_server):
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(shared_demo_server.url + "/ratelimit/").read().decode()
    assert "ip:127.0.0.1" in page
    token = next(c.value for c in jar if c.name == "csrftoken")
    statuses = []
    for _ in range(8):
        request = urllib.request.Request(
            shared_demo_server.url + "/ratelimit/api/",
            data=b"{}",
            headers={"X-CSRFToken": token, "Content-Type": "application/json"},
        )
        try:
            statuses.append(opener.open(request).status)
        except urllib.error.HTTPError as error:
            statuses.append(error.code)
            assert "Too many requests" in json.loads(error.read())["error"]
    assert statuses[:5] == [200] * 5
    assert 429 in statuses[5:]


def _read(url):
    return urllib.request.urlopen(url, timeout=10).read().decode()


def test_demo_flight_refuses_bad_bookings_clearly(shared_demo_server):
    booker = Booker(shared_demo_server.url, "DO-7")
    assert booker.book("7C", "Ann")[0] == 200
    assert booker.book("7C", "Ann") == (409, {"ok": False, "error": "Seat 7C is already yours."})
    other = Booker(shared_demo_server.url, "DO-7")
    status, body = other.book("7C", "Bob")
    assert (status, body["error"]) == (409, "Sorry, seat 7C has just been booked by someone else.")
    assert other.cancel("7C") == (409, {"ok": False, "error": "Seat 7C is not one of yours."})
    assert booker.cancel("7C") == (200, {"ok": True, "seat": "7C"})
    assert other.book("7C", "Bob")[0] == 200
    # "7C\n" once passed the pattern (re.match with $) and booked seat 7C a second time.
    for seat, passenger in (
        ("7G", "Bob"),
        ("21A", "Bob"),
        (["7A"], "Bob"),
        ("8A", ""),
        ("7C\n", "Ann"),
    ):
        assert other.book(seat, passenger)[0] == 400
    assert other.book("8A", "<b>" + "x" * 40)[0] == 400
    assert other.book("8A", "<b>Bob</b>") == (
        200,
        {"ok": True, "seat": "8A", "passenger": "<b>Bob</b>"},
    )


async def test_demo_chat_room_sleeps_between_messages_with_its_sockets_open(shared_demo_server):
    """The page's state URL says asleep after hibernate_after; the next message wakes it."""
    import websockets

    page = await asyncio.to_thread(_read, shared_demo_server.url + "/chat/naps/")
    state_url = (
        shared_demo_server.url
        + re.search(r'"(/objects/chat\.ChatRoom/[0-9a-f]+/state/)"', page)[1]
    )
    url = shared_demo_server.url.replace("http", "ws") + "/ws/chat/naps/?user=ann"
    async with websockets.connect(
        url, additional_headers={"Origin": shared_demo_server.url}
    ) as ann:
        await recv_json(ann)
        await ann.send(json.dumps({"type": "message", "text": "before the nap"}))
        await recv_json(ann)
        assert json.loads(await asyncio.to_thread(_read, state_url))["state"] == "active"
        deadline = time.monotonic() + 30
        while json.loads(await asyncio.to_thread(_read, state_url))["state"] != "asleep":
            assert time.monotonic() < deadline, "the room never fell asleep"
            await asyncio.sleep(0.5)
        await ann.send(json.dumps({"type": "message", "text": "after the nap"}))
        assert (await recv_json(ann))["text"] == "after the nap"
        assert json.loads(await asyncio.to_thread(_read, state_url))["state"] == "active"


async def test_demo_board_refuses_bad_strokes_and_keeps_the_last_thousand(shared_demo_server):
    import websockets

    url = shared_demo_server.url.replace("http", "ws") + "/ws/board/keep/"
    origin = {"Origin": shared_demo_server.url}
    good = {"type": "stroke", "colour": "#1d2330", "width": 3, "points": [[0, 0], [10, 10]]}
    async with websockets.connect(url, additional_headers=origin) as ws:
        assert await recv_json(ws) == {"type": "history", "strokes": [], "first": True}
        for bad in (
            {**good, "colour": "red"},
            {**good, "colour": "#FFFFFF"},
            {**good, "width": 0},
            {**good, "width": 2.5},
            {**good, "points": []},
            {**good, "points": [[0, 0]] * 257},
            {**good, "points": [[1001, 0]]},
            {**good, "points": [["1", 0]]},
            {**good, "points": [[True, 0]]},
            {"type": "erase"},
        ):
            await ws.send(json.dumps(bad))
            assert (await recv_json(ws))["type"] == "error", bad
        await ws.send("x" * 200_000)
        assert "too large" in (await recv_json(ws))["message"]
    # Seventeen viewers in turn draw sixty strokes each (a socket's burst): 1,020 strokes.
    for n in range(17):
        async with websockets.connect(url, additional_headers=origin) as ws:
            for i in range(60):
                await ws.send(json.dumps({**good, "points": [[n, i]]}))
            while (await recv_json(ws, 30)).get("id") != 60 * (n + 1):
                pass  # the replayed history, then this socket's own strokes
    async with websockets.connect(url, additional_headers=origin) as newcomer:
        replayed = []
        while len(replayed) < 1000:
            replayed += (await recv_json(newcomer, 10))["strokes"]
        assert [s["id"] for s in replayed] == list(range(21, 1021))
        await newcomer.send(json.dumps({"type": "clear"}))
        assert await recv_json(newcomer) == {"type": "clear"}
    async with websockets.connect(url, additional_headers=origin) as ws:
        assert await recv_json(ws) == {"type": "history", "strokes": [], "first": True}


async def test_demo_trial_validates_its_messages_and_subscribing_deletes_the_alarm(
    shared_demo_server,
):
    import websockets

    url = shared_demo_server.url.replace("http", "ws") + "/ws/trial/checks/"
    async with websockets.connect(
        url, additional_headers={"Origin": shared_demo_server.url}
    ) as ws:
        state = await recv_json(ws)
        assert (state["plan"], state["alarm"]) == ("none", None)
        for bad in (
            {"type": "start", "seconds": "3"},
            {"type": "start", "seconds": 2},
            {"type": "start", "seconds": 10**9},
            {"type": "start"},
            {"type": "_log"},
        ):
            await ws.send(json.dumps(bad))
            assert (await recv_json(ws))["type"] == "error", bad
    # A socket of its own: each socket's messages count against its own rate (5 at once).
    async with websockets.connect(
        url, additional_headers={"Origin": shared_demo_server.url}
    ) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"type": "start", "seconds": 600}))
        state = await recv_json(ws)
        assert state["plan"] == "trial"
        assert state["alarm"] == pytest.approx(state["ends_at"])
        await ws.send(json.dumps({"type": "start", "seconds": 600}))
        assert "on the trial plan already" in (await recv_json(ws))["message"]
        assert state["reminder"] == pytest.approx(state["ends_at"] - 60, abs=0.5)
        await ws.send(json.dumps({"type": "subscribe"}))
        state = await recv_json(ws)
        assert (state["plan"], state["alarm"], state["reminder"]) == ("paid", None, None)


async def test_demo_trial_reminds_half_way_through_a_short_trial_then_expires(
    shared_demo_server,
):
    import websockets

    url = shared_demo_server.url.replace("http", "ws") + "/ws/trial/reminded/"
    async with websockets.connect(
        url, additional_headers={"Origin": shared_demo_server.url}
    ) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"type": "start", "seconds": 4}))
        started = await recv_json(ws)
        assert started["reminder"] == pytest.approx(started["ends_at"] - 2, abs=0.5)
        reminded = await recv_json(ws, 15)  # the schedule's run broadcasts the state
        assert reminded["plan"] == "trial" and reminded["reminder"] is None
        assert reminded["events"][-1]["text"] == "Reminder: The trial ends in 2 s."
        assert reminded["events"][-1]["at"] >= started["ends_at"] - 2
        expired = await recv_json(ws, 15)  # then the alarm
        assert expired["plan"] == "expired"


async def test_demo_object_panel_links_to_the_object_in_the_admin(shared_demo_server):
    import websockets

    base = shared_demo_server.url
    env = {**shared_demo_server.env, "DJANGO_SUPERUSER_PASSWORD": "demo-pass-123"}
    await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "manage.py",
            "createsuperuser",
            "--noinput",
            "--username",
            "admin",
            "--email",
            "admin@example.com",
        ],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )
    url = base.replace("http", "ws") + "/ws/chat/admin-link/?user=ann"
    async with websockets.connect(url, additional_headers={"Origin": base}) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"type": "message", "text": "stored, so catalogued"}))
        await recv_json(ws)
    page = await asyncio.to_thread(_read, base + "/chat/admin-link/")
    hex_id = re.search(r'<code id="object-id" class="id">([0-9a-f]{64})</code>', page)[1]
    link = re.search(r'<a id="object-admin" href="([^"]+)"', page)[1]
    assert link == f"/admin/durable_objects/objectrecord/?q={hex_id}"
    opener = await asyncio.to_thread(_admin_login, base, "admin", "demo-pass-123")
    deadline = time.monotonic() + 20
    while True:  # the catalog is written every CATALOG_FLUSH_INTERVAL (2 s)
        found = await asyncio.to_thread(lambda: opener.open(base + link).read().decode())
        if "admin-link" in found and "1 result" in found:  # this object alone
            break
        assert time.monotonic() < deadline, "the search never found the object alone"
        await asyncio.sleep(0.5)
    assert hex_id in found
    # Once catalogued, the room is listed on every other room's page.
    elsewhere = await asyncio.to_thread(_read, base + "/chat/elsewhere/")
    assert '<a href="/chat/admin-link/">admin-link</a>' in elsewhere


def _admin_login(base, username, password):
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = opener.open(base + "/admin/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)[1]
    data = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token,
            "username": username,
            "password": password,
            "next": "/admin/",
        }
    ).encode()
    request = urllib.request.Request(base + "/admin/login/", data=data, headers={"Referer": base})
    assert "Log out" in opener.open(request).read().decode()
    return opener
