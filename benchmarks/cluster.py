"""Cluster figures: ``python -m benchmarks.cluster [--quick]`` (also part of the full run).

A private redis-server, runobjects hosts, and this process as a client that cannot
host: every call crosses to another process over channels-redis. Printed: the channel
layer's own round trip (the floor), call latency and rate, and failover time.
"""

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def row(label, value, target=""):
    return f"{label:<58} {value:>16}  {target}"


def verdict(ok):
    return "PASS" if ok else "MISS"


def start_host(env):
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runobjects"],
        cwd=REPO,
        env={**env, "BENCH_ROLE": "host"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert "Hosting objects" in process.stdout.readline()
    return process


async def layer_round_trip(count):
    """ms for a message to this process's channel and back again (two hops), p50/p99,
    on the channel layer that carries the calls (TRANSPORT_LAYER)."""
    from channels.layers import get_channel_layer

    from durable_objects.conf import get_config

    layer = get_channel_layer(get_config()["TRANSPORT_LAYER"])
    channel = await layer.new_channel()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        await layer.send(channel, {"type": "ping"})
        await layer.receive(channel)
        await layer.send(channel, {"type": "pong"})
        await layer.receive(channel)
        times.append((time.perf_counter() - start) * 1000)
    return times


async def call_latencies(count):
    from benchmarks.objects import BenchCounter

    stub = BenchCounter.objects.get_by_name("cluster-latency")
    await stub.noop()  # the host claims and activates it
    times = []
    for _ in range(count):
        start = time.perf_counter()
        await stub.noop()
        times.append((time.perf_counter() - start) * 1000)
    return times


async def call_rate(total, callers):
    from benchmarks.objects import BenchCounter

    stubs = [BenchCounter.objects.get_by_name(f"cluster-rate-{i % 8}") for i in range(callers)]
    for stub in stubs:
        await stub.noop()
    per_caller = total // callers

    async def caller(stub):
        for _ in range(per_caller):
            await stub.noop()

    start = time.perf_counter()
    await asyncio.gather(*(caller(stub) for stub in stubs))
    return per_caller * callers / (time.perf_counter() - start)


async def failover_seconds(hosts):
    """Seconds from SIGKILL of an object's host to the first successful call elsewhere."""
    import redis

    from benchmarks.objects import BenchCounter
    from durable_objects import DurableObjectError

    stub = BenchCounter.objects.get_by_name("cluster-failover")
    await stub.increment()
    client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    token = client.get(f"do:lease:{stub.id}").decode()
    victim = next(p for p in hosts if token.startswith(f"{p.pid:x}-"))
    killed = time.perf_counter()
    os.kill(victim.pid, signal.SIGKILL)
    while True:
        try:
            await stub.increment()
            return time.perf_counter() - killed
        except DurableObjectError:
            await asyncio.sleep(0.01)


def child(quick):
    """The measuring client, in a process of its own with the cluster settings."""
    from benchmarks.__main__ import setup_django

    setup_django()
    env = dict(os.environ)
    hosts = [start_host(env), start_host(env)]
    try:

        async def measure():
            floor = await layer_round_trip(200 if quick else 1000)
            latency = await call_latencies(500 if quick else 3000)
            one = await call_rate(1000 if quick else 5000, 1)
            many = await call_rate(3200 if quick else 32000, 32)
            failover = await failover_seconds(hosts)
            return floor, latency, one, many, failover

        floor, latency, one, many, failover = asyncio.run(measure())
    finally:
        for process in hosts:
            if process.poll() is None:
                process.terminate()
                process.wait(10)
    p50 = statistics.median(latency)
    print(
        row(
            "(g) channel layer round trip (floor): p50 / p99 ms",
            f"{statistics.median(floor):.2f} / {percentile(floor, 0.99):.2f}",
        )
    )
    print(
        row(
            "(g) call to another process: p50 / p99 ms",
            f"{p50:.2f} / {percentile(latency, 0.99):.2f}",
            f"target p50 <= 1 ms {verdict(p50 <= 1)}",
        )
    )
    print(row("(g) calls/s to another process, 1 caller", f"{one:,.0f}"))
    print(
        row(
            "(g) calls/s to another process, 32 callers",
            f"{many:,.0f}",
            f"target >= 5,000 {verdict(many >= 5000)}",
        )
    )
    print(
        row(
            "(g) SIGKILL of a host to a successful call elsewhere, s",
            f"{failover:.2f}",
            f"target <= LEASE_TTL + 1 = 3.0 {verdict(failover <= 3)}",
        )
    )


def stop_rig(host, workers, grace=15.0):
    """Stop the RQ workers, then their host, each SIGKILLed after grace seconds.

    The workers go first: a job still calling an object would otherwise wait out its
    call timeout for a host that is gone, and hold up the worker's warm shutdown.
    """
    from durable_objects.testing.servers import stop_process

    for process in workers:
        if process.poll() is None:
            process.terminate()
    for process in workers:
        stop_process(process, grace)
    stop_process(host, grace)


def run_cluster_child(module, quick, child_flag="--child", extra_env=None):
    """Start a private Redis, run ``python -m <module> <child_flag>`` as a cluster client
    in a process of its own (extra_env added to its environment), and return its
    standard output."""
    from durable_objects.testing.servers import RedisServer

    work = Path(tempfile.mkdtemp(prefix="do-bench-cluster-"))
    server = RedisServer(work)
    try:
        import redis

        redis.Redis.from_url(server.url).set("do:boot", repr(time.time() - 3600))
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
            "BENCH_DIR": str(work),
            "BENCH_REDIS_URL": server.url,
            "BENCH_ROLE": "client",
            **(extra_env or {}),
        }
        return subprocess.run(
            [sys.executable, "-m", module, child_flag] + (["--quick"] if quick else []),
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        server.stop()


def run(quick, emit):
    """Start Redis, run the measuring client in a process of its own, print its lines."""
    for line in run_cluster_child("benchmarks.cluster", quick).splitlines():
        emit(line)


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster")
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options.quick)
    else:
        run(options.quick, lambda text: print(text, flush=True))


if __name__ == "__main__":
    main()
