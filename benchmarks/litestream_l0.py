"""What a sync costs as Litestream's level 0 grows: ``python -m benchmarks.litestream_l0``.

Litestream 0.5 writes one level-0 LTX file per sync and keeps it for ``l0-retention``
(the generated config keeps it for ``REPLICATION["RETENTION"]``, a day, so that every
moment of the window restores exactly). Each sync through the control socket lists the
database's local level-0 directory twice (below), so each sync costs more than the one
before while the files accumulate. This runs one daemon
against SeaweedFS on loopback, one SQLite database, and ``sync(wait=True)`` after each
one-row write, and prints the sync's latency and the daemon's CPU per sync for each
fifth of the run: with a day of level 0, and with five seconds (files deleted once
compacted into level 1, every 30 s by default).

After each fifth it also times syncs with nothing to sync (no write since the last):
they upload nothing, so what they cost is the control socket's own work. Its sync
handler (``Store.SyncDB``) reads ``DB.MaxLTX()`` before and after the sync, and
``MaxLTX()`` lists the level-0 directory and parses every name in it, so that cost
grows with the files kept.
"""

import argparse
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.cluster import row

PARTS = 5


def cpu_ms(pid):
    """User plus system CPU time of a process so far, in ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


IDLE_SYNCS = 100  # syncs with nothing to sync, after each fifth


def idle_syncs(daemon, path):
    """(p50 ms, daemon CPU ms) of a sync with nothing to sync."""
    cpu, latencies = cpu_ms(daemon.process.pid), []
    for _ in range(IDLE_SYNCS):
        start = time.perf_counter()
        daemon.client.sync(path, wait=True, timeout=10)
        latencies.append((time.perf_counter() - start) * 1000)
    return statistics.median(latencies), (cpu_ms(daemon.process.pid) - cpu) / IDLE_SYNCS


def syncs(store, work, l0_retention, count):
    """[(p50 ms, daemon CPU ms per sync, idle p50, idle CPU)] per fifth of count syncs,
    and the L0 files left."""
    from durable_objects.testing.replication import LitestreamDaemon

    daemon = LitestreamDaemon(
        work / f"daemon-{l0_retention}", env=store.env, retention=86400, l0_retention=l0_retention
    )
    try:
        path = work / f"db-{l0_retention}.sqlite3"
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (n INTEGER)")
        daemon.client.register(path, store.url(f"l0-{l0_retention}"))
        parts, size = [], count // PARTS
        for _ in range(PARTS):
            cpu, latencies = cpu_ms(daemon.process.pid), []
            for n in range(size):
                db.execute("INSERT INTO t VALUES (?)", (n,))
                start = time.perf_counter()
                daemon.client.sync(path, wait=True, timeout=10)
                latencies.append((time.perf_counter() - start) * 1000)
            spent = cpu_ms(daemon.process.pid) - cpu
            parts.append((statistics.median(latencies), spent / size, *idle_syncs(daemon, path)))
        level0 = next(path.parent.glob(f".{path.name}-litestream/ltx/0"), None)
        files = len(os.listdir(level0)) if level0 is not None else 0
        db.close()
        return parts, files
    finally:
        daemon.stop()


def run(count, emit=print):
    from durable_objects.testing.replication import SeaweedServer

    work = Path(tempfile.mkdtemp(prefix="do-bench-l0-"))
    store = SeaweedServer(work / "store")
    try:
        for l0_retention, name in ((86400, "a day"), (5, "5 s")):
            parts, files = syncs(store, work, l0_retention, count)
            size = count // PARTS
            for index, (p50, cpu, idle_p50, idle_cpu) in enumerate(parts):
                emit(
                    row(
                        f"litestream: l0-retention {name}, syncs {index * size:,} to "
                        f"{(index + 1) * size:,}: p50 ms, daemon CPU ms/sync",
                        f"{p50:.2f} / {cpu:.2f}",
                        f"nothing to sync after: {idle_p50:.2f} / {idle_cpu:.2f}",
                    )
                )
            emit(row(f"litestream: l0-retention {name}, level-0 files after", f"{files:,}"))
    finally:
        store.stop()
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.litestream_l0")
    parser.add_argument("--syncs", type=int, default=4000, help="syncs per configuration")
    args = parser.parse_args()
    from benchmarks.__main__ import setup_django

    setup_django()
    run(args.syncs)


if __name__ == "__main__":
    main()
