"""Side-by-side rows for the web edge's fast paths: ``python -m benchmarks.sidebyside_edge``.

The shared harness (``../shared/sidebyside/sidebyside.py``) drives daphne and the Django
view only. This script imports it and runs its workerd side (``workerd_side()``,
unchanged) and its clients (``http_seq``, ``ws_suite``, ``ws_echo``) against the paths
it has no row for, each in a server process of its own on a throwaway project
(``project.make_project``) around this checkout:

- HTTP through ``http_path()`` straight to the object's ``fetch()``, which does the
  harness's Counter upsert, on each server. Against workerd's row (a handler calls the
  object) and against workerd's own fetch path (the worker hands the request to
  ``stub.fetch()``, the same request to the same Counter): while ``workerd_side()`` runs,
  its ``http_seq`` also times that path.
- WebSocket echo (room: SQL + broadcast; no storage) and broadcast to 100 sockets on
  uvicorn and granian, the harness's objects and clients.

- HTTP through the Django view under ``durable_objects.asgi``'s handler (its request
  threads pooled) beside Django's own.
- The ceilings: the server with no object, against workerd's rows with its object. A
  Django async view (under both handlers) and a plain ASGI answer (no Django, no
  Channels) against workerd's HTTP row; a plain ASGI echo against workerd's echo through
  its object. A row can reach 1.0x only where its ceiling is above it.

Every echo reply and every broadcast round is checked (the harness's ``_bad`` and
``_lost`` counts), and every ``http_path()`` request must have reached the object: its
count after the run is the number of requests sent.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent

# The harness's Counter and Echo, with a subclass whose fetch() is workerd's Counter.fetch
# for a plain request: the upsert, its value as the body.
HTTP_OBJECT = """

from django.http import HttpResponse


class HttpCounter(Counter):
    def fetch(self, request):
        return HttpResponse(str(self.increment()))

    def count(self):
        return self.ctx.storage.sql.exec("SELECT v FROM kv WHERE k = 'c'").one()["v"]
"""

ASGI = """
import gc
from django.core.asgi import get_asgi_application
django_asgi_app = get_asgi_application()
from durable_objects.asgi import get_asgi_application as get_pooled_application  # noqa: E402
pooled_django_app = get_pooled_application()  # Django's handler, its threads pooled
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path, re_path  # noqa: E402
from durable_objects.routing import http_path, websocket_path  # noqa: E402
from acc_app.objects import Counter, Echo, HttpCounter  # noqa: E402


class BareEcho(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        await self.send(text_data=text_data)


async def count(scope, receive, send):
    name = scope["url_route"]["kwargs"]["name"]
    body = str(await HttpCounter.objects.get_by_name(name).count()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def raw_echo(scope, receive, send):
    # The server's own floor: a WebSocket echo in plain ASGI, no Channels, no Django.
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while (event := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": event.get("text")})


async def raw_http(scope, receive, send):
    # The server's own HTTP floor: a plain ASGI answer, no Channels, no Django.
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"1"})


channels_application = ProtocolTypeRouter({
    "http": URLRouter([
        http_path("direct/<str:name>", HttpCounter, name="name"),
        path("count/<str:name>", count),
        re_path(r"", django_asgi_app),
    ]),
    "websocket": URLRouter([
        path("ws/bare/", BareEcho.as_asgi()),
        websocket_path("ws/room/<str:room>/", Counter, name="room"),
        websocket_path("ws/echo/<str:room>/", Echo, name="room"),
    ]),
})


async def application(scope, receive, send):
    if scope.get("path") == "/raw":
        handler = raw_echo if scope["type"] == "websocket" else raw_http
        return await handler(scope, receive, send)
    if scope["type"] == "http" and scope["path"].startswith("/pooled/"):
        path = scope["path"].removeprefix("/pooled")
        scope = dict(scope, path=path, raw_path=path.encode())
        return await pooled_django_app(scope, receive, send)
    return await channels_application(scope, receive, send)


gc.freeze()  # as the harness's WS_ASGI and benchmarks/asgi.py do
"""

SETTINGS = """
ROOT_URLCONF = "acc_app.views"
CHANNEL_LAYERS = {"default": {"BACKEND": "durable_objects.layers.InProcessChannelLayer"}}
"""


def load_harness(directory):
    """The shared harness's module (its directory holds sidebyside.py and project.py)."""
    directory = str(Path(directory).resolve())
    if not Path(directory, "sidebyside.py").exists():
        raise SystemExit(f"No sidebyside.py in {directory}; pass --harness DIRECTORY.")
    sys.path.insert(0, directory)
    import sidebyside

    return sidebyside


def workerd(harness, workerd_dir):
    """The harness's workerd_side(), which also times workerd's fetch path meanwhile."""
    timed = harness.http_seq
    fetch = {}

    def http_seq(port, path, n):
        if path.startswith("/rpc"):  # the same Counter, through the worker's stub.fetch()
            fetch["http_fetch"] = timed(port, "/fetch?name=httpfetch", n)
        return timed(port, path, n)

    harness.http_seq = http_seq
    try:
        found = harness.workerd_side(workerd_dir)
    finally:
        harness.http_seq = timed
    return None if found is None else {**found, **fetch}


def make_project(harness, project):
    """A throwaway project around the checkout: the harness's objects, views and layer."""
    from project import make_project as make

    tmp, env = make(harness.OBJECTS + HTTP_OBJECT, project, prefix="sbs-edge-")
    Path(tmp, "acc_app", "views.py").write_text(harness.VIEWS)
    with open(Path(tmp, "acc_settings.py"), "a") as settings:
        settings.write(SETTINGS)
    Path(tmp, "acc_edge_asgi.py").write_text(ASGI)
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v", "0"], env=env, cwd=tmp, check=True
    )
    return tmp, env


def ours(harness, project, kinds, ws_kinds):
    """{kind: figures} for each server: http_path(), the view and floor, and the sockets."""
    from durable_objects.testing.servers import free_port, start_server

    tmp, env = make_project(harness, project)
    results = {}
    for kind in kinds:
        port = free_port()
        server_env = dict(env, ACC_ROOT=os.path.join(tmp, f"root-{kind}"))
        with open(Path(tmp, f"{kind}.log"), "w") as log:
            process = start_server(
                kind,
                "acc_edge_asgi:application",
                port,
                server_env,
                cwd=tmp,
                stdout=subprocess.DEVNULL,  # daphne's access log
                stderr=log,
            )
            try:
                results[kind] = measure(harness, kind, port, kind in ws_kinds)
            finally:
                process.terminate()
                process.wait(10)
    return results


def measure(harness, kind, port, sockets):
    n = harness.N_HTTP
    found = {"http_direct": harness.http_seq(port, "/direct/edge", n)}
    sent = n + 1  # http_seq's warm-up request
    counted = int(urllib.request.urlopen(f"http://127.0.0.1:{port}/count/edge", timeout=30).read())
    found["http_direct_lost"] = sent - counted
    found["http"] = harness.http_seq(port, "/rpc", n)
    found["http_pooled"] = harness.http_seq(port, "/pooled/rpc", n)
    found["floor_http_plain"] = harness.http_seq(port, "/plain", n)
    found["floor_http_pooled"] = harness.http_seq(port, "/pooled/plain", n)
    found["floor_http_raw"] = harness.http_seq(port, "/raw", n)
    if sockets:
        ws = f"ws://127.0.0.1:{port}"
        urls = (f"{ws}/ws/room/echo1/", f"{ws}/ws/echo/echo0/", f"{ws}/ws/room/bcast/")
        found.update(asyncio.run(harness.ws_suite(*urls)))
        found["floor_ws_bare"], _ = asyncio.run(harness.ws_echo(f"{ws}/ws/bare/", harness.N_ECHO))
        found["floor_ws_raw"], _ = asyncio.run(harness.ws_echo(f"{ws}/raw", harness.N_ECHO))
    return found


ROWS = [  # (our key, workerd's key, label, higher is better)
    ("http_direct", "http", "HTTP req/s, http_path() -> object", True),
    ("http_direct", "http_fetch", "  against workerd's stub.fetch() path", True),
    ("http", "http", "HTTP req/s, Django view -> object", True),
    ("http_pooled", "http", "  the same, durable_objects.asgi's handler", True),
    ("wsecho", "wsecho", "WS echo msg/s (room: SQL+broadcast)", True),
    ("wsecho0", "wsecho0", "WS echo msg/s (no storage)", True),
    ("bcast_p50", "bcast_p50", "WS bcast 100 socks p50 ms", False),
    ("bcast_p99", "bcast_p99", "WS bcast 100 socks p99 ms", False),
    # The ceilings: the server with no object against workerd's rows with its object
    # (>= 1.0x is needed for ours to reach 1.0x at all).
    ("floor_http_plain", "http", "ceiling: Django view, no object", True),
    ("floor_http_pooled", "http", "  the same, durable_objects.asgi's handler", True),
    ("floor_http_raw", "http", "ceiling: plain ASGI answer, no object", True),
    ("floor_ws_raw", "wsecho0", "ceiling: plain ASGI echo, no object", True),
]


CORE_ROWS = [  # the harness's rows that no server carries: calls from Python, in-process
    ("seq", "calls/s, 1 caller, durable write", True),
    ("par", "calls/s, 32 callers, durable write", True),
    ("noop", "calls/s, no storage", True),
    ("new", "ms per new object", False),
]


def figure(value, higher):
    if value is None:
        return "-"
    return f"{value:,.0f}" if higher else f"{value:.2f}"


def losses(side, found):
    """{side.key: count} of the wrong echoes, incomplete rounds and lost requests."""
    return {f"{side}.{k}": v for k, v in (found or {}).items() if k.endswith(("_bad", "_lost"))}


def ratio(value, other, higher):
    """ours against workerd, above 1 is faster (for a time, workerd's over ours); or None."""
    if not (value and other):
        return None
    return value / other if higher else other / value


class Row(NamedTuple):
    label: str
    theirs: float | None  # workerd's figure
    ours: float
    ratio: float | None  # ours against workerd, above 1 is faster
    higher: bool  # a higher figure is better (a rate, not a time)
    ceiling: bool  # the server with no object: a bound on the rows above, not a row


def rows(wd, mine, core=None):
    """The Rows found: the harness's in-process ones (``core``), then each server's.

    ``mine`` is ``{server: figures}``; ``core`` the harness's in-process figures, or None.
    """
    for key, label, higher in CORE_ROWS if core else ():
        value, other = core.get(key), wd.get(key) if wd else None
        if value is not None:
            yield Row(label, other, value, ratio(value, other, higher), higher, False)
    for kind, found in mine.items():
        for key, theirs, label, higher in ROWS:
            value = found.get(key)
            if value is None:
                continue
            other = wd.get(theirs) if wd else None
            times = ratio(value, other, higher)
            yield Row(f"[{kind}] {label}", other, value, times, higher, key.startswith("floor_"))


def report(wd, mine, emit, core=None):
    emit(f"{'workload':<44} {'workerd':>10} {'ours':>10} {'ours vs workerd':>16}")
    for row in rows(wd, mine, core):
        shown = "" if row.ratio is None else f"{row.ratio:.2f}x"
        theirs, ours = figure(row.theirs, row.higher), figure(row.ours, row.higher)
        emit(f"{row.label:<44} {theirs:>10} {ours:>10} {shown:>16}")
    checks = losses("workerd", wd)
    for kind, found in mine.items():
        checks.update(losses(kind, found))
    emit("wrong echo replies / broadcast rounds not fully delivered / http_path() requests lost:")
    emit("  " + json.dumps(checks) + ("  OK" if not any(checks.values()) else "  LOST"))
    if wd:
        plain = wd["floor_http_plain"]
        emit(f"floor (workerd): worker answering without the object {plain:,.0f} req/s")
    for kind, found in mine.items():
        plain = found["floor_http_plain"]
        line = f"floor ({kind}): Django async view without object {plain:,.0f} req/s"
        line += f" ({found['floor_http_pooled']:,.0f} with durable_objects.asgi)"
        line += f"; plain ASGI answer {found['floor_http_raw']:,.0f} req/s"
        if "floor_ws_bare" in found:
            line += f"; bare Channels echo consumer {found['floor_ws_bare']:,.0f} msg/s"
            line += f"; plain ASGI echo {found['floor_ws_raw']:,.0f} msg/s"
        emit(line)
    emit(object_cost(wd, mine))
    emit("RAW " + json.dumps({"workerd": wd, "ours": mine, "core": core}))


def cost_ms(rate, floor):
    """The milliseconds a request spends beyond the floor's: 1/rate - 1/floor."""
    return 1000 / rate - 1000 / floor if rate and floor else None


def object_cost(wd, mine):
    """What the object adds to each HTTP request, over the same server's request without it.

    workerd: its handler calling the object, over the worker answering alone. Ours: the
    Django view calling the object, over the same view without it, under each handler.
    """

    def shown(found, rate, floor):
        cost = cost_ms(found.get(rate), found.get(floor))
        return "-" if cost is None else f"{cost:.2f}"

    parts = [f"workerd {shown(wd, 'http', 'floor_http_plain')}"] if wd else []
    for kind, found in mine.items():
        part = f"{kind} {shown(found, 'http', 'floor_http_plain')}"
        if found.get("http_pooled") is not None:
            pooled = shown(found, "http_pooled", "floor_http_pooled")
            part += f" ({pooled} with durable_objects.asgi)"
        parts.append(part)
    return "the object's cost per HTTP request over its floor, ms: " + "; ".join(parts)


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sidebyside_edge")
    parser.add_argument("--harness", default=str(REPO.parent / "shared" / "sidebyside"))
    parser.add_argument(
        "--workerd-dir",
        default=os.environ.get("WORKERD_DIR", str(Path.home() / ".cache" / "workerd")),
    )
    parser.add_argument("--servers", nargs="+", default=["daphne", "uvicorn", "granian"])
    parser.add_argument(
        "--ws-servers", nargs="+", default=["uvicorn", "granian"], help="servers for WS rows"
    )
    parser.add_argument(
        "--no-core-rows",
        action="store_true",
        help="skip the harness's in-process rows (calls and new objects; its daphne rows)",
    )
    options = parser.parse_args()
    harness = load_harness(options.harness)
    emit = lambda text: print(text, flush=True)  # noqa: E731
    import tempfile

    floors = harness.floors(tempfile.mkdtemp(prefix="sbs-edge-floors-"))
    emit(
        f"floors: fsync {floors['fsync']:,.0f}/s; SQLite WAL commits/s synchronous=FULL "
        f"{floors['FULL']:,.0f}, NORMAL {floors['NORMAL']:,.0f}"
    )
    wd = workerd(harness, options.workerd_dir)
    if wd is None:
        emit(f"workerd not found or not started (--workerd-dir {options.workerd_dir}): ours only")
    core = None
    if not options.no_core_rows:  # the harness's own, so that one run has every row
        core = harness.ours_side(str(REPO))
        if core is None:
            raise SystemExit("The harness's ours_side() failed (its output is above).")
    mine = ours(harness, str(REPO), options.servers, set(options.ws_servers))
    report(wd, mine, emit, core)
    emit("RAW floors " + json.dumps(floors))


if __name__ == "__main__":
    main()
