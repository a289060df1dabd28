"""Print the benchmarks: ``python -m benchmarks [--quick] [--core]``.

(f) alone: ``python -m benchmarks.sockets``; (g) alone: ``python -m benchmarks.cluster``;
(h) alone: ``python -m benchmarks.admin``; (i) alone: ``python -m benchmarks.alarms``;
(j) alone: ``python -m benchmarks.backup``; schedules alone: ``python -m benchmarks.schedules``;
the web edge under each ASGI server alone: ``python -m benchmarks.web``.

Each figure is printed next to its target. Run on an otherwise idle machine: two cores
shared with other work give lower and noisier figures.
"""

import argparse
import asyncio
import ctypes
import gc
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def setup_django():
    sys.path.insert(0, str(REPO))
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def rss_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


# -- context: the disk ------------------------------------------------------------------


def disk_rates(directory, count):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fsync.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    start = time.perf_counter()
    for _ in range(count):
        os.write(fd, b"x")
        os.fsync(fd)
    fsyncs = count / (time.perf_counter() - start)
    os.close(fd)
    db = directory / "raw.sqlite3"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t(k TEXT PRIMARY KEY, v) WITHOUT ROWID")
    start = time.perf_counter()
    for i in range(count):
        conn.execute("BEGIN")
        conn.execute("INSERT OR REPLACE INTO t VALUES ('k', ?)", (i,))
        conn.execute("COMMIT")
    commits = count / (time.perf_counter() - start)
    conn.close()
    return (
        fsyncs,
        commits,
        raw_reopen_ms(directory, min(count, 200)),
        raw_create_ms(directory, min(count, 200)),
    )


def raw_create_ms(directory, count):
    """p50 ms to make a new WAL database with one table and commit one row (FULL).

    What a new object costs SQLite itself, without the runtime: the floor of (c) new.
    """
    times = []
    for i in range(count):
        path = directory / f"create-{i}.sqlite3"
        start = time.perf_counter()
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE kv(k TEXT PRIMARY KEY, v) WITHOUT ROWID")
        conn.execute("INSERT INTO kv VALUES ('value', 1)")
        times.append((time.perf_counter() - start) * 1000)
        conn.close()
    return statistics.median(times)


def raw_reopen_ms(directory, count):
    """p50 ms to open an existing WAL database, bump a counter (synchronous=NORMAL) and read.

    What activating an existing shard costs SQLite itself, without the runtime.
    """
    paths = []
    for i in range(count):
        path = directory / f"reopen-{i}.sqlite3"
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE meta(k TEXT PRIMARY KEY, v)")
        conn.execute("INSERT INTO meta VALUES ('epoch', 0)")
        conn.close()
        paths.append(path)
    times = []
    for path in paths:
        start = time.perf_counter()
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE meta SET v = v + 1 WHERE k = 'epoch'")
        conn.execute("COMMIT")
        conn.execute("SELECT v FROM meta").fetchall()
        times.append((time.perf_counter() - start) * 1000)
        conn.close()
    return statistics.median(times)


# -- (a), (b): calls per second ---------------------------------------------------------


async def calls_per_second(method, total, callers):
    from benchmarks.objects import BenchCounter

    stub = BenchCounter.objects.get_by_name(f"{method}-{callers}")
    await getattr(stub, method)()  # activate outside the timing
    per_caller = total // callers

    async def caller():
        call = getattr(stub, method)
        for _ in range(per_caller):
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    rate = per_caller * callers / (time.perf_counter() - start)
    ok = None
    if method == "increment":
        ok = await stub.value() == per_caller * callers + 1
    return rate, ok


async def thread_cost_us(total):
    """Microseconds per call of a no-op sync method on a worker thread, and on the loop."""
    from benchmarks.objects import BenchCounter

    class BenchThreaded(BenchCounter):
        class Meta:
            label = "benchmarks.BenchThreaded"
            run_sync_on_thread = True

    async def per_call(cls):
        stub = cls.objects.get_by_name("thread-cost")
        await stub.noop()  # activate outside the timing
        start = time.perf_counter()
        for _ in range(total):
            await stub.noop()
        return (time.perf_counter() - start) / total * 1e6

    return await per_call(BenchThreaded), await per_call(BenchCounter)


# -- (c): activation --------------------------------------------------------------------


async def activation_times(count):
    from benchmarks.objects import BenchCounter
    from durable_objects.conf import get_config
    from durable_objects.runtime.lifecycle import get_host, reset_host
    from durable_objects.testing import evict_all

    # Rounds smaller than MAX_OPEN_SHARDS, each followed by a pause for the closes (on
    # commit threads) to finish, so no first call pays for closing another shard. Each
    # round has a new host, whose start re-arms alarms by reading every shard under the
    # root on the catalog thread; the round waits for that sweep, which is a host's
    # start, not an activation (it held the GIL and the disk through the first rounds).
    round_size = min(200, get_config()["MAX_OPEN_SHARDS"] // 2)

    async def host_started():
        await BenchCounter.objects.get_by_name("host-start").noop()  # no storage
        await asyncio.wrap_future(get_host().catalog.executor.submit(lambda: None))

    async def first_calls(method, names):
        times = []
        for name in names:
            call = getattr(BenchCounter.objects.get_by_name(name), method)
            start = time.perf_counter()
            await call()
            times.append((time.perf_counter() - start) * 1000)
        return times

    async def rounds(method, drop):
        times = []
        for start in range(0, count, round_size):
            names = [f"activation-{i}" for i in range(start, min(count, start + round_size))]
            await host_started()
            times += await first_calls(method, names)
            await drop()
            await asyncio.sleep(0.5)
        return times

    async def close_everything():
        await evict_all()
        reset_host()  # closes the parked shards too; the next call makes a new host

    # A new object's first call writes, which creates its shard (one fsync included).
    new = await rounds("increment", close_everything)
    # Cold: the first call reads; the host opens the shard and claims the epoch.
    cold = await rounds("value", close_everything)
    # Warm: the object hibernated and its shard stayed open, parked in the host.
    await first_calls("value", [f"activation-{i}" for i in range(round_size)])
    await evict_all()
    warm = await first_calls("value", [f"activation-{i}" for i in range(round_size)])
    return cold, warm, new


# -- (d): memory, in a fresh process each ------------------------------------------------


async def memory_of(count, hibernate):
    from benchmarks.objects import BenchCounter
    from durable_objects.runtime.lifecycle import get_host
    from durable_objects.testing import evict_all

    await BenchCounter.objects.get_by_name("warm-up").increment()
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = rss_mib()
    for i in range(count):
        await BenchCounter.objects.get_by_name(f"memory-{i}").increment()
    if hibernate:
        await evict_all()
        await asyncio.sleep(0.5)  # shards close on a commit thread
    live = len(get_host().activations)
    # Hand freed memory back to the OS, so RSS shows what is held, not the peak.
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_mib() - before, live


# -- (e): the Django baseline -----------------------------------------------------------


def baseline(total, callers):
    from django.db import connection, transaction
    from django.db.models import F

    from benchmarks.models import CounterRow

    with connection.schema_editor() as editor:
        editor.create_model(CounterRow)
    journal = connection.cursor().execute("PRAGMA journal_mode").fetchone()[0]
    CounterRow.objects.create(name="c", value=0)
    per_caller = total // callers
    errors = []

    def caller():
        from django.db import OperationalError, close_old_connections

        try:
            for _ in range(per_caller):
                while True:
                    try:
                        with transaction.atomic():
                            CounterRow.objects.filter(name="c").update(value=F("value") + 1)
                        break
                    except OperationalError:  # "database is locked": retry, as apps do
                        time.sleep(0.001)
        except Exception as exc:
            errors.append(exc)
        finally:
            close_old_connections()

    start = time.perf_counter()
    if callers == 1:
        caller()
    else:
        threads = [threading.Thread(target=caller) for _ in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    rate = per_caller * callers / (time.perf_counter() - start)
    value = CounterRow.objects.get(name="c").value
    with connection.schema_editor() as editor:
        editor.delete_model(CounterRow)
    return rate, value == per_caller * callers and not errors, journal


# -- the table ---------------------------------------------------------------------------


def row(label, value, target=""):
    return f"{label:<58} {value:>16}  {target}"


def verdict(ok):
    return "PASS" if ok else "MISS"


def child_memory(count, hibernate):
    """Run the memory measurement in a fresh process; return (MiB, live instances)."""
    output = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--memory-child", str(count)]
        + (["--hibernate"] if hibernate else []),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(output[0]), int(output[1])


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--core", action="store_true", help="only the disk context and (a) to (e)")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--hibernate", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    setup_django()

    if options.memory_child:
        mib, live = asyncio.run(memory_of(options.memory_child, options.hibernate))
        print(f"{mib:.1f} {live}")
        return

    from django.conf import settings

    quick = options.quick
    calls = 5_000 if quick else 40_000
    writes = 1_000 if quick else 4_000
    group_writes = 3_200 if quick else 32_000
    activations = 200 if quick else 1_000
    objects = 1_000 if quick else 10_000

    lines = []

    def emit(text):
        print(text, flush=True)
        lines.append(text)

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    emit(f"python -m benchmarks{' --quick' if quick else ''}{' --core' if options.core else ''}")
    emit(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  {os.cpu_count()} cores  {cpu}  "
        f"Python {platform.python_version()}  SQLite {sqlite3.sqlite_version}"
    )
    emit("")
    fsyncs, commits, reopen, create = disk_rates(
        settings.WORK_DIR / "disk", 500 if quick else 2_000
    )
    emit(row("disk: raw fsync/s (context)", f"{fsyncs:,.0f}"))
    emit(row("disk: raw SQLite WAL+FULL commits/s, one writer (context)", f"{commits:,.0f}"))
    emit(row("disk: raw SQLite reopen + epoch bump + read, p50 ms (context)", f"{reopen:.2f}"))
    emit(row("disk: raw SQLite new WAL file, table, one commit, p50 ms (floor)", f"{create:.2f}"))

    async def runtime_figures():
        a1, _ = await calls_per_second("noop", calls, 1)
        a32, _ = await calls_per_second("noop", calls, 32)
        b1, ok1 = await calls_per_second("increment", writes, 1)
        b32, ok32 = await calls_per_second("increment", group_writes, 32)
        existing, warm, new = await activation_times(activations)
        threaded = await thread_cost_us(calls // 4)
        return a1, a32, b1, ok1, b32, ok32, existing, warm, new, threaded

    a1, a32, b1, ok1, b32, ok32, existing, warm, new, threaded = asyncio.run(runtime_figures())
    emit(
        row(
            "(a) calls/s, no storage, 1 caller",
            f"{a1:,.0f}",
            f"target >= 30,000 {verdict(a1 >= 30_000)}",
        )
    )
    emit(row("(a) calls/s, no storage, 32 callers", f"{a32:,.0f}"))
    emit(
        row(
            "(a) us per call, Meta.run_sync_on_thread, 1 caller",
            f"{threaded[0]:.1f}",
            f"{threaded[0] - threaded[1]:.1f} us over the loop ({threaded[1]:.1f} us)",
        )
    )
    emit(
        row(
            "(b) calls/s, one durable write each, 1 caller",
            f"{b1:,.0f}",
            f"target >= 2,000 {verdict(b1 >= 2_000)}; count {'OK' if ok1 else 'WRONG'}",
        )
    )
    emit(
        row(
            "(b) calls/s, one durable write each, 32 callers",
            f"{b32:,.0f}",
            f"target >= 10,000 {verdict(b32 >= 10_000)}; count {'OK' if ok32 else 'WRONG'}",
        )
    )
    p50_existing = statistics.median(existing)
    emit(
        row(
            "(c) activation, existing shard closed (first call reads): p50 / p99 ms",
            f"{p50_existing:.2f} / {percentile(existing, 0.99):.2f}",
            f"target p50 <= 2 ms {verdict(p50_existing <= 2)}",
        )
    )
    emit(
        row(
            "(c) wake of a hibernated object, shard still open: p50 / p99 ms",
            f"{statistics.median(warm):.2f} / {percentile(warm, 0.99):.2f}",
        )
    )
    p50_new = statistics.median(new)
    emit(
        row(
            "(c) activation, new object (first call writes): p50 / p99 ms",
            f"{p50_new:.2f} / {percentile(new, 0.99):.2f}",
            f"target p50 <= 4 ms (workerd 3.5-4.5) {verdict(p50_new <= 4)}; floor {create:.2f} ms",
        )
    )
    idle_mib, idle_live = child_memory(objects, hibernate=False)
    asleep_mib, asleep_live = child_memory(objects, hibernate=True)
    emit(
        row(
            f"(d) RSS growth, {objects:,} objects active then idle (MiB)",
            f"{idle_mib:,.1f}",
            f"{idle_live:,} live; target < 1,024 MiB {verdict(idle_mib < 1024)}",
        )
    )
    emit(
        row(
            f"(d) RSS growth, {objects:,} objects hibernated (MiB)",
            f"{asleep_mib:,.1f}",
            f"{asleep_live:,} live",
        )
    )
    e1, e1_ok, journal = baseline(writes, 1)
    e32, e32_ok, _ = baseline(min(group_writes, 8_000), 32)
    emit(
        row(
            f"(e) baseline F() in atomic(), Django SQLite ({journal}), 1 caller",
            f"{e1:,.0f}",
            f"count {'OK' if e1_ok else 'WRONG'}",
        )
    )
    emit(
        row(
            "(e) baseline F() in atomic(), 32 threads",
            f"{e32:,.0f}",
            f"count {'OK' if e32_ok else 'WRONG'}",
        )
    )
    if options.core:
        return
    from benchmarks import admin, alarms, backup, cluster, schedules, sockets, web

    sockets.run(quick, emit)
    web.run(quick, emit)
    cluster.run(quick, emit)
    admin.run(quick, emit)
    alarms.run(quick, emit)
    backup.run(quick, emit)
    schedules.run(quick, emit)


if __name__ == "__main__":
    main()
