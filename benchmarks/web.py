"""The web edge under each ASGI server: ``python -m benchmarks.web [--quick] [--servers ...]``.

Each server (daphne, uvicorn, granian) runs ``benchmarks/web_asgi.py`` in a process of
its own on a free loopback port; the clients run here, as the side-by-side harness's do
(``../shared/sidebyside/``): sequential HTTP requests with urllib (a new connection
each), WebSocket echoes on one socket, and one socket's message to 100 (the websockets
package, no compression). Each figure is printed next to its floor from the same server
in the same run (a Django async view without an object, a bare Channels echo consumer)
and next to its target: workerd's figure. With ``--workerd-dir`` (workerd installed as
``../shared/sidebyside/README.md`` says) that is workerd's own in the same run, through
the shared harness's ``workerd_side()``; without it, issue 17's range from another,
slower machine (the upper end, so PASS means at or above workerd's best there), which
says little on a faster one.
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from benchmarks.sockets import connect_many, fanout_latency

REPO = Path(__file__).resolve().parent.parent

# workerd in issue 17's side-by-side runs on a slower machine (low, high): the targets
# when workerd is not measured in the same run.
WORKERD = {
    "http": (889, 1045),
    "wsecho": (1398, 2049),
    "wsecho0": (3646, 4444),
    "bcast_p50": (3.89, 4.34),
    "bcast_p99": (15.19, 18.24),
}


def row(label, value, target=""):
    return f"{label:<58} {value:>16}  {target}"


def verdict(ok):
    return "PASS" if ok else "MISS"


def start(kind, work_dir):
    from durable_objects.testing.servers import free_port, start_server

    shutil.rmtree(work_dir, ignore_errors=True)
    Path(work_dir).mkdir(parents=True)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        "BENCH_DIR": str(work_dir),
    }
    env.pop("BENCH_REDIS_URL", None)
    process = start_server(
        kind,
        "benchmarks.web_asgi:application",
        port,
        env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, port


def http_rate(port, path, count):
    """Sequential requests per second, a new connection each (as the side-by-side's)."""
    url = f"http://127.0.0.1:{port}{path}"
    bodies = set()
    for _ in range(20):  # warm-up: the object's activation is not in the figure
        urllib.request.urlopen(url, timeout=60).read()
    start = time.perf_counter()
    for _ in range(count):
        bodies.add(urllib.request.urlopen(url, timeout=60).read())
    rate = count / (time.perf_counter() - start)
    return rate, bodies


async def ws_echo(url, count):
    """(messages/s, wrong replies): send and wait for the reply on one socket."""
    (client,) = await connect_many(url, 1)
    try:
        for _ in range(50):
            await client.send("hi")
            await client.recv()
        wrong = 0
        start = time.perf_counter()
        for _ in range(count):
            await client.send("hi")
            if await asyncio.wait_for(client.recv(), 30) != "hi":
                wrong += 1
        return count / (time.perf_counter() - start), wrong
    finally:
        await client.close()


def measure(kind, quick, work_dir):
    """One run of every figure under server kind: a dict of them."""
    requests = 300 if quick else 1000
    echoes = 1000 if quick else 3000
    rounds = 50 if quick else 200
    process, port = start(kind, work_dir)
    try:
        figures = {}
        figures["floor"], _ = http_rate(port, "/plain", requests)
        figures["view"], view_bodies = http_rate(port, "/rpc/view", requests)
        figures["direct"], direct_bodies = http_rate(port, "/direct/direct", requests)
        figures["counted"] = len(view_bodies) == requests and len(direct_bodies) == requests
        ws = f"ws://127.0.0.1:{port}"
        figures["bare"], _ = asyncio.run(ws_echo(f"{ws}/ws/bare/", echoes))
        figures["wsecho0"], figures["wrong0"] = asyncio.run(ws_echo(f"{ws}/ws/echo/e/", echoes))
        figures["wsecho"], figures["wrong"] = asyncio.run(ws_echo(f"{ws}/ws/room/echo/", echoes))
        latencies, _ = asyncio.run(fanout_latency(f"{ws}/ws/room/bcast/", 100, rounds))
    finally:
        process.terminate()
        process.wait(10)
    figures["bcast_p50"] = statistics.median(latencies)
    figures["bcast_p99"] = sorted(latencies)[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return figures


def best(runs):
    """The best of several runs of measure(): highest rates, lowest times, all errors."""
    figures = {}
    for key in runs[0]:
        values = [run[key] for run in runs]
        if key.startswith("bcast_"):
            figures[key] = min(values)
        elif key.startswith("wrong"):
            figures[key] = sum(values)
        elif key == "counted":
            figures[key] = all(values)
        else:
            figures[key] = max(values)
    return figures


def same_run_workerd(workerd_dir, harness_dir, emit):
    """{key: (value, value)}: workerd's figures from this run, or None if not started."""
    from benchmarks.sidebyside_edge import load_harness

    found = load_harness(harness_dir).workerd_side(workerd_dir)
    if found is None:
        emit(f"workerd not found or not started (--workerd-dir {workerd_dir})")
        return None
    emit("targets: workerd's figures from this run")
    rounded = {key: round(found[key], 2 if key.startswith("bcast_") else None) for key in WORKERD}
    return {key: (value, value) for key, value in rounded.items()}


def span(low, high, spec=","):
    """'low-high', or one figure when both are the same run's."""
    return f"{low:{spec}}" if low == high else f"{low:{spec}}-{high:{spec}}"


def report(kind, figures, emit, workerd=WORKERD):
    floor = figures["floor"]
    low, high = workerd["http"]

    def over_floor(rate):
        return f"{1000 / rate - 1000 / floor:+.2f} ms/request over the floor"

    emit(row(f"[{kind}] HTTP floor: Django async view, no object, req/s", f"{floor:,.0f}"))
    view, direct = figures["view"], figures["direct"]
    emit(
        row(
            f"[{kind}] HTTP Django view -> object (durable write), req/s",
            f"{view:,.0f}",
            f"workerd {span(low, high)} {verdict(view >= high)}; {over_floor(view)}",
        )
    )
    emit(
        row(
            f"[{kind}] HTTP http_path() -> fetch() (durable write), req/s",
            f"{direct:,.0f}",
            f"workerd {span(low, high)} {verdict(direct >= high)}; {over_floor(direct)}; "
            f"every reply distinct {'OK' if figures['counted'] else 'WRONG'}",
        )
    )
    emit(row(f"[{kind}] WS floor: bare Channels echo consumer, msg/s", f"{figures['bare']:,.0f}"))
    for key, label, wrong in (
        ("wsecho0", "WS echo through the object, no storage, msg/s", "wrong0"),
        ("wsecho", "WS echo through the room (SQL write + broadcast), msg/s", "wrong"),
    ):
        low, high = workerd[key]
        rate = figures[key]
        emit(
            row(
                f"[{kind}] {label}",
                f"{rate:,.0f}",
                f"workerd {span(low, high)} {verdict(rate >= high)}; {figures[wrong]} wrong",
            )
        )
    p50, p99 = figures["bcast_p50"], figures["bcast_p99"]
    (low50, high50), (low99, high99) = workerd["bcast_p50"], workerd["bcast_p99"]
    emit(
        row(
            f"[{kind}] WS broadcast to 100 sockets: p50 / p99 ms",
            f"{p50:.2f} / {p99:.2f}",
            f"workerd p50 {span(low50, high50, '')} {verdict(p50 <= low50)}, "
            f"p99 {span(low99, high99, '')} {verdict(p99 <= low99)}",
        )
    )


# -- without a server: what each path costs the process ----------------------------------


async def asgi_request(application, path):
    """One request through application, as a server would make it; the status."""
    from durable_objects.testing.servers import http_scope

    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    sent = []

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # no disconnect: Django listens for one meanwhile

    async def send(message):
        sent.append(message)

    await application(http_scope(path), receive, send)
    return sent[0]["status"]


async def inprocess_costs(count):
    """{path: (wall us, CPU us)} per request through benchmarks.web_asgi, no server."""
    from benchmarks.web_asgi import application

    costs = {}
    for path in ("/plain", "/rpc/inprocess", "/direct/inprocess"):
        for _ in range(50):
            assert await asgi_request(application, path) == 200
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            await asgi_request(application, path)
        costs[path] = (
            (time.perf_counter() - wall) / count * 1e6,
            (time.process_time() - cpu) / count * 1e6,
        )
    # The object calls alone, as the view and the route make them.
    from benchmarks.objects import BenchHttpCounter

    stub = BenchHttpCounter.objects.get_by_name("inprocess-stub")
    for label, call in (("stub.increment()", stub.increment), ("stub.fetch()", stub.fetch)):
        arguments = ("/",) if label == "stub.fetch()" else ()
        for _ in range(50):
            await call(*arguments)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            await call(*arguments)
        costs[label] = (
            (time.perf_counter() - wall) / count * 1e6,
            (time.process_time() - cpu) / count * 1e6,
        )
    return costs


def inprocess(quick, emit, work_dir, synchronous):
    """Run inprocess_costs in a fresh process with SYNCHRONOUS as given; print the rows."""
    shutil.rmtree(work_dir, ignore_errors=True)
    Path(work_dir).mkdir(parents=True)
    env = {**os.environ, "BENCH_DIR": str(work_dir), "BENCH_SYNCHRONOUS": synchronous}
    env.pop("BENCH_REDIS_URL", None)
    output = subprocess.run(
        [sys.executable, "-m", "benchmarks.web", "--inprocess-child", "1000" if quick else "5000"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    costs = json.loads(output.strip().splitlines()[-1])
    floor_cpu = costs["/plain"][1]
    labels = {
        "/plain": "floor: Django async view, no object",
        "/rpc/inprocess": "Django view -> object",
        "/direct/inprocess": "http_path() -> fetch()",
        "stub.increment()": "the view's call alone, stub.increment()",
        "stub.fetch()": "a fetch alone, stub.fetch('/')",
    }
    for path, (wall, cpu) in costs.items():
        note = ""
        if path.startswith("/") and path != "/plain":
            note = f"{cpu - floor_cpu:+.0f} us CPU over the floor"
        emit(
            row(
                f"[no server, {synchronous}] {labels[path]}: wall / CPU us",
                f"{wall:,.0f} / {cpu:,.0f}",
                note,
            )
        )


def run(quick, emit, servers=("daphne", "uvicorn", "granian"), repeat=1, workerd_dir=None):
    """Print the figures; with repeat > 1, the servers take turns and each figure is the
    best of its runs (on a shared machine, the run least disturbed by other work).
    With workerd_dir, workerd's figures from this run are the targets."""
    from django.conf import settings

    targets = None
    if workerd_dir is not None and servers:
        targets = same_run_workerd(workerd_dir, REPO.parent / "shared" / "sidebyside", emit)
    if targets is None and servers:
        targets = WORKERD
        emit("targets: issue 17's workerd figures, from a slower machine (see --workerd-dir)")

    for synchronous in ("FULL", "NORMAL"):
        inprocess(quick, emit, settings.WORK_DIR / "web-inprocess", synchronous)
    runs = {kind: [] for kind in servers}
    for _ in range(repeat):
        for kind in servers:
            runs[kind].append(measure(kind, quick, settings.WORK_DIR / f"web-{kind}"))
    if repeat > 1:
        emit(f"(best of {repeat} runs each, the servers taking turns)")
    for kind in servers:
        report(kind, best(runs[kind]), emit, targets)


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.web")
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument(
        "--servers",
        nargs="*",
        default=["daphne", "uvicorn", "granian"],
        help="which (none: in process only)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per server; best of them")
    parser.add_argument(
        "--workerd-dir",
        help="workerd installed here: measure it in this run and use its figures as targets",
    )
    parser.add_argument("--inprocess-child", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.inprocess_child:
        sys.path.insert(0, str(REPO))
        import benchmarks.web_asgi  # noqa: F401 (sets Django up, migrates: not in the loop)

        costs = asyncio.run(inprocess_costs(options.inprocess_child))
        print(json.dumps(costs))
        return
    from benchmarks.__main__ import setup_django

    setup_django()
    emit = lambda text: print(text, flush=True)  # noqa: E731
    run(options.quick, emit, options.servers, options.repeat, options.workerd_dir)


if __name__ == "__main__":
    main()
