"""Schedule figures: ``python -m benchmarks.schedules [--quick]`` (also part of the full run).

(j) Lateness from a schedule's time to its method's start, p50 and p99, of 1,000
schedules spread over 10 s, on one object and on 1,000 objects (one each), for the local
backend (this process hosts the objects) and for RQ (a private redis-server, a runobjects
host, ``rqworker --with-scheduler`` processes, and this process as a client); the cost of
``ctx.schedule()`` and ``ctx.cancel_schedule()`` inside an event (an object already holding
5,000 schedules); and 10,000 schedules on one object: setting them in one event, listing
them, and how long after their common time the last of them started.
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

from benchmarks.alarms import DELIVERIES, RQ_WORKERS
from benchmarks.cluster import REPO, percentile, row, stop_rig, verdict
from durable_objects.alarms.rq import WORKER_COMMAND


def reported():
    """The (tag, started, scheduled) reports of the runs so far."""
    url = os.environ.get("BENCH_REDIS_URL")
    if not url:
        from benchmarks.objects import SCHEDULES_RAN

        return list(SCHEDULES_RAN)
    import json

    import redis

    client = redis.Redis.from_url(url)
    return [tuple(json.loads(item)) for item in client.lrange("bench:schedules", 0, -1)]


async def collect(tags, timeout):
    """{tag: (started, scheduled)} once every tagged run has started (or timeout)."""
    wanted = set(tags)
    deadline = time.monotonic() + timeout
    while True:
        found = {tag: (started, scheduled) for tag, started, scheduled in reported()}
        found = {tag: times for tag, times in found.items() if tag in wanted}
        if len(found) == len(wanted) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


def lateness_ms(found):
    return [(started - scheduled) * 1000 for started, scheduled in found.values()]


async def one_object(prefix, count, spread, lead):
    """Lateness (ms) of count schedules spread over spread seconds on one object."""
    from benchmarks.objects import BenchSchedule

    stub = BenchSchedule.objects.get_by_name(f"{prefix}-one")
    start = time.time() + lead
    times = [start + spread * n / count for n in range(count)]
    await stub.plan(times, f"{prefix}-one")
    assert time.time() < start, "scheduling took longer than the lead; raise it"
    found = await collect([f"{prefix}-one-{n}" for n in range(count)], lead + spread + 120)
    return lateness_ms(found)


async def many_objects(prefix, count, spread, lead, concurrency=5):
    """Lateness (ms) of count schedules spread over spread seconds, one per object."""
    from benchmarks.objects import BenchSchedule

    stubs = [BenchSchedule.objects.get_by_name(f"{prefix}-many-{n}") for n in range(count)]
    start = time.time() + lead
    for first in range(0, count, concurrency):
        await asyncio.gather(
            *(
                _patiently(stubs[n].plan, [start + spread * n / count], f"{prefix}-many-{n}")
                for n in range(first, min(count, first + concurrency))
            )
        )
    assert time.time() < start, "scheduling took longer than the lead; raise it"
    found = await collect([f"{prefix}-many-{n}-0" for n in range(count)], lead + spread + 120)
    return lateness_ms(found)


async def alarms_on_many_objects(count, spread, lead):
    """Lateness (ms) of count alarms on count objects, measured in the same run (context)."""
    from benchmarks.alarms import collect as collect_alarms
    from benchmarks.objects import BenchAlarm

    names = [f"context-alarm-{n}" for n in range(count)]
    stubs = [BenchAlarm.objects.get_by_name(name) for name in names]
    start = time.time() + lead
    for first in range(0, count, 5):
        await asyncio.gather(
            *(
                _patiently(stubs[n].arm, start + spread * n / count)
                for n in range(first, min(count, first + 5))
            )
        )
    assert time.time() < start, "arming took longer than the lead; raise it"
    found = await collect_alarms(names, lead + spread + 120)
    return [(started - scheduled) * 1000 for started, scheduled in found.values()]


async def _patiently(method, *args, tries=10):
    """Call, again on a timeout: a loaded host (two shared cores) may miss CALL_TIMEOUT.

    The calls here are idempotent (a schedule's id is its tag), so a retry replaces.
    """
    from durable_objects.exceptions import DurableObjectError

    for attempt in range(tries):
        try:
            return await method(*args)
        except DurableObjectError:
            if attempt == tries - 1:
                raise
            await asyncio.sleep(1.0)  # a host that missed its heartbeats comes back


async def set_and_cancel_us(existing, count):
    """Microseconds per ctx.schedule() and per ctx.cancel_schedule() inside one event."""
    from benchmarks.objects import BenchSchedule
    from durable_objects.testing import run_in_durable_object

    stub = BenchSchedule.objects.get_by_name("cost")

    def fill(obj, ctx):
        for n in range(existing):
            ctx.schedule(3600 + n, "noop", id=f"existing-{n}")

    await run_in_durable_object(stub, fill)

    def measure(obj, ctx):
        started = time.perf_counter()
        for n in range(count):
            ctx.schedule(3600, "noop", n, id=f"timed-{n}")
        set_us = (time.perf_counter() - started) * 1e6 / count
        started = time.perf_counter()
        for n in range(count):
            ctx.cancel_schedule(f"timed-{n}")
        cancel_us = (time.perf_counter() - started) * 1e6 / count
        return set_us, cancel_us

    return await run_in_durable_object(stub, measure)


async def ten_thousand(lead):
    """(s to set 10,000 in one event, ms to list them, s from their time to the last run)."""
    from benchmarks.objects import BenchSchedule
    from durable_objects.testing import run_in_durable_object

    count = 10_000
    stub = BenchSchedule.objects.get_by_name("ten-thousand")
    due = time.time() + lead
    started = time.perf_counter()
    await stub.plan([due] * count, "tenk")  # one event, one commit
    set_s = time.perf_counter() - started
    started = time.perf_counter()
    listed = await run_in_durable_object(stub, lambda obj, ctx: len(ctx.get_schedules()))
    list_ms = (time.perf_counter() - started) * 1000
    assert listed == count and time.time() < due, "setting took longer than the lead"
    found = await collect([f"tenk-{n}" for n in range(count)], lead + 300)
    last = max(started for started, _ in found.values()) - due
    return set_s, list_ms, last, len(found)


def local(quick):
    from benchmarks.__main__ import setup_django

    setup_django()
    count = 300 if quick else 1000

    async def figures():
        one = await one_object("local", count, 10.0, 3.0)
        many = await many_objects("local", count, 10.0, 40.0)
        alarms = await alarms_on_many_objects(count, 10.0, 40.0)
        cost = await set_and_cancel_us(5000, 1000)
        tenk = await ten_thousand(10.0)
        return one, many, alarms, cost, tenk

    return asyncio.run(figures())


def rq_child(quick):
    """The measuring client of the RQ figures, with the cluster's settings."""
    from benchmarks.__main__ import setup_django

    setup_django()
    host = subprocess.Popen(
        [sys.executable, "manage.py", "runobjects"],
        cwd=REPO,
        env={**os.environ, "BENCH_ROLE": "host"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert "Hosting objects" in host.stdout.readline()
    workers = [
        subprocess.Popen(
            [sys.executable, "manage.py", *WORKER_COMMAND],
            cwd=REPO,
            env={**os.environ, "BENCH_ROLE": "auto"},  # a client of the cluster
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(RQ_WORKERS)
    ]
    count = 300 if quick else 1000
    try:
        time.sleep(3)  # the workers register and one takes the scheduler lock

        async def figures():
            one = await one_object("rq", count, 10.0, 5.0)
            many = await many_objects("rq", count, 10.0, 40.0)
            alarms = await alarms_on_many_objects(count, 10.0, 40.0)
            return one, many, alarms

        one, many, alarms = asyncio.run(figures())
    finally:
        stop_rig(host, workers)
    print(
        " ".join(
            f"{statistics.median(values)} {percentile(values, 0.99)} {len(values)}"
            for values in (one, many, alarms)
        )
    )


def rq(quick, delivery):
    from benchmarks.cluster import run_cluster_child

    env = {"BENCH_ALARM_DELIVERY": delivery}
    try:
        values = run_cluster_child("benchmarks.schedules", quick, "--rq-child", env).split()
    except subprocess.CalledProcessError as exc:
        print(exc.stderr[-3000:], file=sys.stderr)  # the child's traceback
        raise
    return [(float(values[n]), float(values[n + 1]), int(values[n + 2])) for n in range(0, 9, 3)]


def _lateness_rows(emit, backend, target_ms, one, many):
    for where, (p50, p99, ran) in (("1 object", one), (f"{many[2]} objects", many)):
        emit(
            row(
                f"(j) {backend} schedules over 10 s on {where}, lateness p50 / p99 ms ({ran} ran)",
                f"{p50:.1f} / {p99:.1f}",
                f"target p99 <= {target_ms:,} ms {verdict(p99 <= target_ms)}",
            )
        )


def run(quick, emit, only=None, deliveries=tuple(DELIVERIES)):
    if only != "rq":
        run_local(quick, emit)
    if only != "local":
        for delivery in deliveries:
            run_rq(quick, emit, delivery)


def run_local(quick, emit):
    one, many, alarms, (set_us, cancel_us), (set_s, list_ms, last, delivered) = local(quick)
    summary = [(statistics.median(v), percentile(v, 0.99), len(v)) for v in (one, many)]
    _lateness_rows(emit, "local", 50, *summary)
    emit(
        row(
            f"(j) local alarms over 10 s on {len(alarms)} objects, same run: p50 / p99 ms "
            "(context)",
            f"{statistics.median(alarms):.1f} / {percentile(alarms, 0.99):.1f}",
        )
    )
    emit(
        row(
            "(j) schedule() / cancel_schedule() in an event, 5,000 set, us",
            f"{set_us:.1f} / {cancel_us:.1f}",
            f"target <= 100 us each {verdict(set_us <= 100 and cancel_us <= 100)}",
        )
    )
    emit(
        row(
            "(j) 10,000 schedules on 1 object: set in one event s, list ms",
            f"{set_s:.2f} / {list_ms:.0f}",
        )
    )
    emit(
        row(
            "(j) 10,000 due at once on 1 object: last started after, s",
            f"{last:.2f}",
            f"{delivered:,} ran",
        )
    )


def run_rq(quick, emit, delivery):
    one, many, alarms = rq(quick, delivery)
    how = DELIVERIES[delivery]
    _lateness_rows(emit, f"RQ ({how})", 1500, one, many)
    emit(
        row(
            f"(j) RQ ({how}) alarms over 10 s on {alarms[2]} objects, same run: "
            "p50 / p99 ms (context)",
            f"{alarms[0]:.0f} / {alarms[1]:.0f}",
        )
    )


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.schedules")
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--only", choices=["local", "rq"], help="one backend's figures")
    parser.add_argument(
        "--delivery", choices=list(DELIVERIES), help="one RQ delivery's figures (both if unset)"
    )
    parser.add_argument("--rq-child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.rq_child:
        rq_child(options.quick)
    else:
        deliveries = [options.delivery] if options.delivery else list(DELIVERIES)
        run(options.quick, lambda text: print(text, flush=True), options.only, deliveries)


if __name__ == "__main__":
    main()
