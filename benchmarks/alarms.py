"""Alarm figures: ``python -m benchmarks.alarms [--quick]`` (also part of the full run).

(i) For the local backend (a timer in the host, in this process) and the RQ backend (a
private redis-server, a runobjects host, ``rqworker --with-scheduler`` processes, and this
process as a client): lateness from the due time to the handler's start, p50 and p99, for
alarms spread over several seconds; and the time from the due time until the last of
1,000 alarms due at the same moment has started.
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

from benchmarks.cluster import REPO, percentile, row, stop_rig, verdict
from durable_objects.alarms.rq import WORKER_COMMAND

RQ_WORKERS = int(os.environ.get("BENCH_RQ_WORKERS", "3"))


async def arm_all(stubs, times, concurrency=5):
    for start in range(0, len(stubs), concurrency):
        await asyncio.gather(
            *(
                stub.arm(when)
                for stub, when in zip(
                    stubs[start : start + concurrency],
                    times[start : start + concurrency],
                    strict=True,
                )
            )
        )


def reported():
    """The (name, started, scheduled) reports of the alarms that ran so far."""
    url = os.environ.get("BENCH_REDIS_URL")
    if not url:
        from benchmarks.objects import ALARMS_FIRED

        return list(ALARMS_FIRED)
    import json

    import redis

    return [
        tuple(json.loads(item)) for item in redis.Redis.from_url(url).lrange("bench:alarms", 0, -1)
    ]


async def collect(names, timeout):
    """{name: (started, scheduled)} once every named object's alarm has run (or timeout)."""
    wanted = set(names)
    deadline = time.monotonic() + timeout
    while True:
        found = {name: (started, scheduled) for name, started, scheduled in reported()}
        found = {name: times for name, times in found.items() if name in wanted}
        if len(found) == len(wanted) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


async def measure(prefix, spread, lateness_count, burst_count, lead, burst_lead):
    """Lateness (ms) of alarms spread over `spread` seconds; seconds for a burst to run."""
    from benchmarks.objects import BenchAlarm

    names = [f"{prefix}-late-{n}" for n in range(lateness_count)]
    stubs = [BenchAlarm.objects.get_by_name(name) for name in names]
    start = time.time() + lead
    await arm_all(stubs, [start + spread * n / lateness_count for n in range(lateness_count)])
    assert time.time() < start, "arming took longer than the lead; raise it"
    found = await collect(names, lead + spread + 120)
    lateness = [(started - scheduled) * 1000 for started, scheduled in found.values()]
    burst_names = [f"{prefix}-burst-{n}" for n in range(burst_count)]
    burst = [BenchAlarm.objects.get_by_name(name) for name in burst_names]
    due = time.time() + burst_lead  # time to arm them all first
    await arm_all(burst, [due] * burst_count)
    assert time.time() < due, "arming took longer than the lead; raise it"
    found_burst = await collect(burst_names, 300)
    last = max(started for started, _ in found_burst.values()) - due
    return lateness, len(found), last, len(found_burst)


def local(quick):
    from benchmarks.__main__ import setup_django

    setup_django()
    count = 200 if quick else 500
    return asyncio.run(measure("local", 5.0, count, 1000, 10.0, 10.0))


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
    try:
        time.sleep(3)  # the workers register and one takes the scheduler lock
        count = 100 if quick else 300
        lateness, fired, last, burst = asyncio.run(measure("rq", 10.0, count, 1000, 15.0, 40.0))
    finally:
        stop_rig(host, workers)
    print(f"{statistics.median(lateness)} {percentile(lateness, 0.99)} {fired} {last} {burst}")


# How an RQ host's alarms are delivered (ALARM_FALLBACK_DELAY): by its own timers with
# the jobs behind them (the default), or by the workers alone (None; as after the host died).
DELIVERIES = {"holder": "host's timers", "workers": "workers alone"}


def rq(quick, delivery):
    from benchmarks.cluster import run_cluster_child

    env = {"BENCH_ALARM_DELIVERY": delivery}
    output = run_cluster_child("benchmarks.alarms", quick, "--rq-child", env)
    p50, p99, fired, last, burst = output.split()
    return float(p50), float(p99), int(fired), float(last), int(burst)


def run(quick, emit, only=None, deliveries=tuple(DELIVERIES)):
    if only != "rq":
        run_local(quick, emit)
    if only != "local":
        for delivery in deliveries:
            run_rq(quick, emit, delivery)


def run_local(quick, emit):
    lateness, fired, last, burst = local(quick)
    p50, p99 = statistics.median(lateness), percentile(lateness, 0.99)
    emit(
        row(
            f"(i) local alarms, lateness p50 / p99 ms ({fired} alarms)",
            f"{p50:.1f} / {p99:.1f}",
            f"target p99 <= 50 ms {verdict(p99 <= 50)}",
        )
    )
    emit(
        row(
            f"(i) local alarms, {burst} due at once: last started after, s",
            f"{last:.2f}",
            f"target <= 5 s {verdict(last <= 5 and burst == 1000)}",
        )
    )


def run_rq(quick, emit, delivery):
    p50, p99, fired, last, burst = rq(quick, delivery)
    how = DELIVERIES[delivery]
    emit(
        row(
            f"(i) RQ alarms ({how}), lateness p50 / p99 ms ({fired} alarms)",
            f"{p50:.0f} / {p99:.0f}",
            f"target p99 <= 1,500 ms {verdict(p99 <= 1500)}",
        )
    )
    emit(
        row(
            f"(i) RQ alarms ({how}), {burst} due at once, {RQ_WORKERS} workers: "
            "last started after, s",
            f"{last:.2f}",
            f"target <= 5 s {verdict(last <= 5 and burst == 1000)}",
        )
    )


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.alarms")
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
