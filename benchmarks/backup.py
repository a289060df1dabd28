"""Backup figures: ``python -m benchmarks.backup [--quick]`` (also part of the full run).

(j) Export, import and copy of one object's database of 1 MiB and 100 MiB on the
embedded host (this process): the whole operation as a caller sees it, the events in
the live instance, the chunks through the host, the file written. Median of a few runs.

(k) Point-in-time recovery on the embedded host with REPLICATION on (a real Litestream
daemon, a file:// replica in the work directory): the time to restore a 1 MiB and a
100 MiB shard to a bookmark and to a time, as restore_object() sees it (litestream
restore, the checks, the swap, the new generation's first sync), and to take a bookmark.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from asgiref.sync import async_to_sync

SIZES = (1, 100)  # MiB
TARGET_SECONDS = {1: 0.25, 100: 5.0}  # per operation, on a machine with a working disk
RESTORE_TARGET_SECONDS = {1: 1.0, 100: 10.0}  # a restore to a point in time


def row(label, value, target=""):
    return f"{label:<58} {value:>16}  {target}"


def timed(fn, *args):
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def figures(quick=False):
    from benchmarks.__main__ import setup_django

    setup_django()
    from django.conf import settings

    from benchmarks.objects import BenchArchive
    from durable_objects.backups import export_object, import_object

    runs = 2 if quick else 3
    work = settings.WORK_DIR / "backup"
    work.mkdir(parents=True, exist_ok=True)
    lines = ["(j) export, import and copy of one object's database (embedded host)"]
    for mib in SIZES:
        if quick and mib > 1:
            mib = 20
        source = BenchArchive.objects.get_by_name(f"source-{mib}")
        size = async_to_sync(source.fill)(mib)
        path = work / f"export-{mib}.sqlite3"
        exports, imports, copies = [], [], []
        for n in range(runs):
            exports.append(timed(export_object, BenchArchive, source.id, path))
            target = BenchArchive.objects.get_by_name(f"target-{mib}-{n}")
            imports.append(timed(import_object, BenchArchive, target.id, path))
            assert async_to_sync(target.count)() == mib
            copy = BenchArchive.objects.id_from_name(f"copy-{mib}-{n}")
            copies.append(timed(BenchArchive.objects.copy, source.id, copy))
        target = TARGET_SECONDS.get(mib)
        for label, values in (("export", exports), ("import", imports), ("copy", copies)):
            seconds = statistics.median(values)
            rate = size / seconds / 1024 / 1024
            verdict = "" if target is None else ("PASS" if seconds <= target else "MISS")
            goal = f"target <= {target:g} s  {verdict}" if target else "(quick: no target)"
            lines.append(
                row(f"  {label} of a {size / 1024 / 1024:.0f} MiB shard", f"{seconds:.3f} s", goal)
                + f"  ({rate:.0f} MiB/s)"
            )
    return lines


def pitr_figures(quick=False):
    """(k): restores of one object to a bookmark and to a time, with a real daemon."""
    from benchmarks.__main__ import setup_django

    setup_django()
    from benchmarks.objects import BenchArchive
    from durable_objects.backups import restore_object

    runs = 2 if quick else 3
    lines = ["(k) point-in-time recovery of one object (embedded host, file:// replica)"]
    for mib in SIZES:
        if quick and mib > 1:
            mib = 20
        stub = BenchArchive.objects.get_by_name(f"pitr-{mib}")
        size = async_to_sync(stub.fill)(mib)
        bookmarks, to_bookmark, to_time = [], [], []
        for _ in range(runs):
            started = time.perf_counter()
            bookmark = async_to_sync(stub.bookmark)()
            bookmarks.append(time.perf_counter() - started)
            time.sleep(0.05)
            moment = time.time()
            time.sleep(0.05)
            async_to_sync(stub.drop_one)()  # a write after the point
            to_bookmark.append(timed(_restore, restore_object, BenchArchive, stub, bookmark, None))
            assert async_to_sync(stub.count)() == mib
            async_to_sync(stub.drop_one)()
            to_time.append(timed(_restore, restore_object, BenchArchive, stub, None, moment))
            assert async_to_sync(stub.count)() == mib
        target = RESTORE_TARGET_SECONDS.get(mib)
        shard = f"{size / 1024 / 1024:.0f} MiB shard"
        for label, values in (
            (f"  restore of a {shard} to a bookmark", to_bookmark),
            (f"  restore of a {shard} to a time", to_time),
        ):
            seconds = statistics.median(values)
            verdict = "" if target is None else ("PASS" if seconds <= target else "MISS")
            goal = f"target <= {target:g} s  {verdict}" if target else "(quick: no target)"
            lines.append(row(label, f"{seconds:.3f} s", goal))
        lines.append(
            row(f"  get_current_bookmark() on a {shard}", f"{statistics.median(bookmarks):.3f} s")
        )
    return lines


def _restore(restore_object, cls, stub, bookmark, when):
    restore_object(cls, stub.id, bookmark=bookmark, when=when)


def run(quick, emit):
    """Run the figures in child processes on a work directory of their own, removed after."""
    from durable_objects.testing.replication import LitestreamDaemon

    work = tempfile.mkdtemp(prefix="do-bench-backup-")
    daemon = None
    try:
        output = _child(["--child"], quick, {"BENCH_DIR": work})
        daemon = LitestreamDaemon(Path(work) / "litestream")
        (Path(work) / "pitr").mkdir()
        output += _child(
            ["--child-pitr"],
            quick,
            {
                "BENCH_DIR": str(Path(work) / "pitr"),
                "BENCH_REPLICA_URL": (Path(work) / "replicas").as_uri(),
                "BENCH_LITESTREAM_SOCKET": str(daemon.socket_path),
            },
        )
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
    for line in output.splitlines():
        emit(line)


def _child(arguments, quick, env):
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.backup", *arguments] + (["--quick"] if quick else []),
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "BENCH_REDIS_URL": "", **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backup")
    parser.add_argument("--quick", action="store_true", help="20 MiB instead of 100, two runs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-pitr", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child or options.child_pitr:
        lines = pitr_figures if options.child_pitr else figures
        for line in lines(quick=options.quick):
            print(line, flush=True)
    else:
        run(options.quick, lambda text: print(text, flush=True))


if __name__ == "__main__":
    sys.exit(main())
