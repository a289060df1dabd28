"""Backup figures: ``python -m benchmarks.backup [--quick]`` (also part of the full run).

(j) Export, import and copy of one object's database of 1 MiB and 100 MiB on the
embedded host (this process): the whole operation as a caller sees it, the events in
the live instance, the chunks through the host, the file written. Median of a few runs.
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


def run(quick, emit):
    """Run the figures in a child process on a work directory of its own, removed after."""
    work = tempfile.mkdtemp(prefix="do-bench-backup-")
    try:
        output = subprocess.run(
            [sys.executable, "-m", "benchmarks.backup", "--child"]
            + (["--quick"] if quick else []),
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "BENCH_DIR": work, "BENCH_REDIS_URL": ""},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for line in output.splitlines():
        emit(line)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backup")
    parser.add_argument("--quick", action="store_true", help="20 MiB instead of 100, two runs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        for line in figures(quick=options.quick):
            print(line, flush=True)
    else:
        run(options.quick, lambda text: print(text, flush=True))


if __name__ == "__main__":
    sys.exit(main())
