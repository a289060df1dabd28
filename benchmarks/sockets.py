"""WebSocket figures: ``python -m benchmarks.sockets [--quick]`` (also part of the full run).

A daphne process serves benchmarks.asgi on a free loopback port; the clients (the
websockets package, no compression) run in this process. One room inserts each message
into its SQLite and broadcasts it. The baseline is a plain Channels consumer that saves
each message with the ORM and uses group_send, measured in the same run.
"""

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def create_baseline_table():
    from django.db import connection

    from benchmarks.models import ChatMessage

    if ChatMessage._meta.db_table not in connection.introspection.table_names():
        with connection.schema_editor() as editor:
            editor.create_model(ChatMessage)


# Each server's option for its protocol pings (benchmarks.sockets.measure_many).
PING_OPTIONS = {"daphne": ("--ping-interval", "300"), "uvicorn": ("--ws-ping-interval", "300")}


def start_socket_server(work_dir, *options, server="daphne"):
    """Start server (daphne, uvicorn or granian) on benchmarks.asgi; (process, ws:// URL)."""
    from durable_objects.testing.servers import free_port, start_server

    Path(work_dir).mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        "BENCH_DIR": str(work_dir),
    }
    process = start_server(
        server,
        "benchmarks.asgi:application",
        port,
        env,
        *options,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, f"ws://127.0.0.1:{port}"


async def connect_many(url, count, batch=200):
    import websockets

    clients = []
    for start in range(0, count, batch):
        size = min(batch, count - start)
        clients += await asyncio.gather(
            *(
                websockets.connect(url, compression=None, ping_interval=None, max_queue=None)
                for _ in range(size)
            )
        )
    return clients


async def close_all(clients):
    await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


def cpu_seconds(pid):
    """User and system CPU seconds so far of process pid and its live children.

    Its children too: granian serves the application from a worker process of its own.
    """
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # it exited meanwhile
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def fanout_latency(url, count, rounds, server_pid=None):
    """(ms from one client's send to the last of count clients' receive, per round; the
    clients' own CPU ms per round, the floor this process puts under every round).

    With server_pid, a third value: the server process's CPU ms per round."""
    clients = await connect_many(url, count)
    # Past the server's freeze of its new sockets (durable_objects/sockets/collector.py).
    await asyncio.sleep(1.5)
    loop = asyncio.get_running_loop()
    arrived = {}
    done = {}

    async def reader(client):
        async for text in client:
            k = int(text.split(":", 1)[0])
            arrived[k] = arrived.get(k, 0) + 1
            if arrived[k] == count:
                done[k].set_result(time.perf_counter())

    readers = [asyncio.create_task(reader(client)) for client in clients]
    latencies = []
    cpu = 0.0
    # The clients' own garbage collection (1,000 connections in this process) is not the
    # server's latency: collect now, then not during the rounds.
    gc.collect()
    gc.disable()
    server_cpu = 0.0
    try:
        for k in range(rounds + 3):  # three rounds of warm-up
            if k == 3 and server_pid is not None:
                server_cpu = cpu_seconds(server_pid)
            done[k] = loop.create_future()
            start, start_cpu = time.perf_counter(), time.process_time()
            await clients[0].send(f"{k}:hello")
            end = await asyncio.wait_for(done[k], 60)
            if k >= 3:
                latencies.append((end - start) * 1000)
                cpu += time.process_time() - start_cpu
        if server_pid is not None:
            server_cpu = (cpu_seconds(server_pid) - server_cpu) * 1000 / rounds
    finally:
        gc.enable()
        for task in readers:
            task.cancel()
        await close_all(clients)
    if server_pid is None:
        return latencies, cpu * 1000 / rounds
    return latencies, cpu * 1000 / rounds, server_cpu


async def sustained_rate(url, count, per_client):
    """(messages/s, frames lost, sockets closed): each of count clients sends per_client.

    The rate counts messages every client received, up to the last one that arrived;
    the run ends when all arrived or nothing arrived for 3 s (lost, or a socket closed).
    """
    clients = await connect_many(url, count)
    total = count * per_client
    received = [0] * count
    closed = [False] * count
    last = [time.perf_counter()]

    async def reader(index, client):
        try:
            async for _ in client:
                received[index] += 1
                last[0] = time.perf_counter()
        except Exception:  # closed by the server (4008): counted below
            pass
        closed[index] = True

    readers = [asyncio.create_task(reader(i, c)) for i, c in enumerate(clients)]

    async def sender(index, client):
        for n in range(per_client):
            await client.send(f"{index}:{n}")

    try:
        start = time.perf_counter()
        await asyncio.gather(
            *(sender(i, c) for i, c in enumerate(clients)), return_exceptions=True
        )
        while min(received) < total and time.perf_counter() - last[0] < 3 and not any(closed):
            await asyncio.sleep(0.01)
    finally:
        for task in readers:
            task.cancel()
        await close_all(clients)
    delivered = min(received)
    return delivered / (last[0] - start), total * count - sum(received), sum(closed)


async def idle_socket_memory(url, pid, count):
    """KiB of daphne's RSS per connected idle socket, the room hibernated."""
    before = rss_kib(pid)
    clients = await connect_many(url, count)
    await asyncio.sleep(3.0)  # past the room's hibernate_after (1 s) and the host's tick
    after = rss_kib(pid)
    await close_all(clients)
    return (after - before) / count


def row(label, value, target=""):
    return f"{label:<58} {value:>16}  {target}"


def verdict(ok):
    return "PASS" if ok else "MISS"


TARGETS = {  # sockets: (percentile, its name, target ms)
    100: (0.5, "p50", 4),  # workerd's 3.9-4.3 ms in the side-by-side run (issue 17)
    1000: (0.99, "p99", 100),
    10000: (0.99, "p99", 1000),
}


async def fanout(url, count, rounds, kinds, emit, pid):
    """Print the send-to-last-receive row of count sockets for each kind of room."""
    for kind in kinds:
        latencies, cpu, server = await fanout_latency(
            f"{url}/ws/{kind}/lat{count}/", count, rounds, pid
        )
        p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
        target = f"clients' CPU {cpu:.1f} ms a round (floor), server's {server:.1f} ms"
        if kind == "room":
            fraction, name, limit = TARGETS[count]
            value = percentile(latencies, fraction)
            target = f"target {name} <= {limit:,} ms {verdict(value <= limit)}; {target}"
        name = "ours" if kind == "room" else "baseline"
        emit(
            row(
                f"(f) send to last receive, {count:,} sockets, {name}: p50 / p99 ms",
                f"{p50:.1f} / {p99:.1f}",
                target,
            )
        )


async def measure(url, pid, quick, emit, counts=(100, 1000)):
    rounds = 30 if quick else 200
    for count in counts:
        await fanout(url, count, rounds, ("room", "baseline"), emit, pid)
    per_client = 200 if quick else 1000
    for kind in ("room", "baseline"):
        rate, lost, closed = await sustained_rate(f"{url}/ws/{kind}/rate/", 10, per_client)
        name = "ours" if kind == "room" else "baseline"
        target = f"target >= 2,000 {verdict(rate >= 2000)}; " if kind == "room" else ""
        target += f"{lost:,} frames lost, {closed} sockets closed"
        emit(row(f"(f) messages/s into one room, 10 sockets, {name}", f"{rate:,.0f}", target))


async def measure_fanout(url, pid, quick, emit, counts):
    """Only the send-to-last-receive rows of our room, for counts sockets (--only-fanout)."""
    for count in counts:
        await fanout(
            url, count, 30 if quick else (50 if count >= 10000 else 200), ("room",), emit, pid
        )


async def measure_many(url, pid, quick, emit):
    """10,000 sockets, in a server process of their own (their closes take it seconds).

    No baseline: its stock layer is O(N^2) per broadcast, a minute a round at 10,000.
    This server pings every 300 s, not 20: 10,000 sockets connected within seconds of
    each other would all be pinged (and answer) within a second, 20 s later, mid-run.
    """
    await fanout(url, 10000, 30 if quick else 50, ("room",), emit, pid)


async def measure_memory(url, pid, quick, emit, server="daphne"):
    sockets = 1000 if quick else 5000
    per_socket = await idle_socket_memory(f"{url}/ws/room/idle/", pid, sockets)
    emit(
        row(
            f"(f) {server} RSS per idle socket, {sockets:,} sockets, room asleep (KiB)",
            f"{per_socket:.1f}",
            f"target <= 64 KiB {verdict(per_socket <= 64)}",
        )
    )


def raise_fd_limit(needed):
    """Raise this process's open-file limit to needed (10,000 clients), up to the hard limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run(quick, emit, server="daphne", only_fanout=None):
    """Start the server, print the WebSocket figures, stop it (a fresh one for each step).

    The server's processes inherit this one's raised open-file limit.
    """
    import functools

    from django.conf import settings

    raise_fd_limit(12000)
    pings = PING_OPTIONS.get(server, ())
    # A directory of its own: this process's host (if it has one) locks its storage root.
    work_dir = settings.WORK_DIR / "sockets"
    if only_fanout:
        steps = [(functools.partial(measure_fanout, counts=only_fanout), pings)]
    else:
        steps = [
            (measure, ()),
            (measure_many, pings),
            (functools.partial(measure_memory, server=server), ()),
        ]
    if server != "daphne":
        emit(f"(server: {server})")
    for step, options in steps:
        process, url = start_socket_server(work_dir, *options, server=server)
        try:
            asyncio.run(step(url, process.pid, quick, emit))
        finally:
            process.terminate()
            process.wait(10)


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sockets")
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument(
        "--server", default="daphne", choices=("daphne", "uvicorn", "granian"), help="ASGI server"
    )
    parser.add_argument(
        "--only-fanout",
        type=int,
        nargs="+",
        metavar="SOCKETS",
        help="only the broadcast rows of our room, for these socket counts",
    )
    options = parser.parse_args()
    from benchmarks.__main__ import setup_django

    setup_django()
    run(options.quick, lambda text: print(text, flush=True), options.server, options.only_fanout)


if __name__ == "__main__":
    main()
