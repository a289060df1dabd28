"""Machines figures (issue 14): ``python -m benchmarks.machines [--quick] [--writes-only]``.

A private redis-server, SeaweedFS (S3 on loopback) and one Litestream daemon per
machine. Printed, each next to its target and to the figure without replication from
the same run:

- durable writes/s to one object, 1 and 32 callers, and write latency p50/p99, with
  ``DURABILITY`` "replicated" (replies wait for the replica and the epoch check), with
  "local" (replication behind) and with replication off;
- S3 PUT requests per second of those steady writes (LTX files Litestream wrote);
- failover after a machine loss (SIGKILL of its processes, its disk deleted): seconds to
  the first successful call on another machine, next to LEASE_TTL;
- restore time and rate of a 1 MiB, 100 MiB and 1 GiB shard (1 GiB not with --quick).

``--writes-only`` runs the write phases alone (no failover, no restores), and
``--durability replicated`` (repeatable) only the phases named, each with a fresh daemon
state of its own prefix. ``--page-size 16384`` makes every shard of the run (the hosts'
``SHARD_PAGE_SIZE`` and the restored files) with pages of that size.
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.cluster import percentile, row, start_host, verdict

REPO = Path(__file__).resolve().parent.parent
LEASE_TTL = 2.0


# -- in a child process: one machine's host, writing --------------------------------


async def write_figures(quick):
    from benchmarks.objects import BenchCounter
    from durable_objects.runtime.lifecycle import get_host

    one = BenchCounter.objects.get_by_name(f"machines-one-{os.getpid()}")
    for _ in range(200):  # claims it, makes and registers the shard, warms up
        await one.increment()
    times = []
    for _ in range(300 if quick else 2000):
        start = time.perf_counter()
        await one.increment()
        times.append((time.perf_counter() - start) * 1000)
    one_rate = len(times) / (sum(times) / 1000)

    many = BenchCounter.objects.get_by_name(f"machines-many-{os.getpid()}")
    await many.increment()
    host = get_host()
    syncs = host.replicator.syncs if host.replicator is not None else 0
    seconds = 2.0 if quick else 6.0
    done = 0

    async def caller():
        nonlocal done
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            await many.increment()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(32)))
    elapsed = time.perf_counter() - start
    syncs = (host.replicator.syncs - syncs) if host.replicator is not None else 0
    return {
        "p50": statistics.median(times),
        "p99": percentile(times, 0.99),
        "one": one_rate,
        "many": done / elapsed,
        "syncs_per_second": syncs / elapsed,
        "many_id": str(many.id),
        "elapsed": elapsed,
    }


def child(quick):
    from benchmarks.__main__ import setup_django

    setup_django()
    try:
        print(json.dumps(asyncio.run(write_figures(quick))))
    except Exception as error:
        print(getattr(error, "remote_traceback", ""), file=sys.stderr)
        raise


# -- the parent: servers, machines, figures ------------------------------------------


class Machines:
    """Redis, SeaweedFS, and per machine a storage root and a Litestream daemon."""

    def __init__(self, work):
        from durable_objects.testing.replication import SeaweedServer
        from durable_objects.testing.servers import RedisServer

        self.work = work
        (work / "redis").mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(work / "redis")
        self.seaweed = SeaweedServer(work / "seaweed")
        self.daemons = []
        self.processes = []

    def daemon(self, index):
        """Machine index's Litestream daemon, started on first use."""
        from durable_objects.testing.replication import LitestreamDaemon

        while len(self.daemons) <= index:
            self.daemons.append(
                LitestreamDaemon(self.work / f"ls-{len(self.daemons)}", env=self.seaweed.env)
            )
        return self.daemons[index]

    def env(self, index, durability, prefix="bench"):
        env = {
            **os.environ,
            **self.seaweed.env,
            "PYTHONPATH": str(REPO),
            "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
            "BENCH_DIR": str(self.work),
            "BENCH_REDIS_URL": self.redis.url,
            "BENCH_STORAGE_ROOT": str(self.work / f"machine-{index}"),
        }
        if durability != "off":
            env["BENCH_REPLICA_URL"] = self.seaweed.url(prefix)
            env["BENCH_LITESTREAM_SOCKET"] = str(self.daemon(index).socket_path)
            env["BENCH_DURABILITY"] = durability
        return env

    def boot(self):
        import redis

        client = redis.Redis.from_url(self.redis.url)
        client.flushall()
        client.set("do:boot", repr(time.time() - 3600))

    def close(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for daemon in self.daemons:
            daemon.stop()
        self.seaweed.stop()
        self.redis.stop()

    def ltx_files(self, prefix):
        """LTX files under prefix in the bucket (SeaweedFS's filer listing), recursively."""
        filer = self.seaweed.ports["filer"]
        count = 0
        pending = [f"/buckets/{self.seaweed.bucket}/{prefix}/"]
        while pending:
            path = pending.pop()
            request = urllib.request.Request(
                f"http://127.0.0.1:{filer}{path}?limit=100000",
                headers={"Accept": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                listing = json.loads(response.read() or b"{}")
            for entry in listing.get("Entries") or []:
                name = entry["FullPath"]
                if entry.get("Mode", 0) & 0o20000000000:  # a directory
                    pending.append(name + "/")
                elif name.endswith(".ltx"):
                    count += 1
        return count


def writes(machines, durability, quick):
    machines.boot()
    prefix = f"writes-{durability}"
    env = machines.env(0, durability, prefix)
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.machines", "--child"] + (["--quick"] if quick else []),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the writes child ({durability}) failed: {out.stderr[-3000:]}")
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    if durability != "off":
        try:
            files = machines.ltx_files(prefix)
            figures["ltx_files"] = files
        except OSError:
            figures["ltx_files"] = None
    return figures


def failover(machines):
    """Seconds from the loss of the machine holding an object to a successful call."""
    import redis

    machines.boot()
    envs = [machines.env(i, "replicated", "failover") for i in (0, 1)]
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=envs[0], check=True
    )
    hosts = [start_host(env) for env in envs]
    machines.processes.extend(hosts)
    client_env = {**envs[1], "BENCH_ROLE": "client"}
    script = (
        "import asyncio, sys, time\n"
        "from benchmarks.__main__ import setup_django\n"
        "setup_django()\n"
        "from benchmarks.objects import BenchCounter\n"
        "from durable_objects import DurableObjectError\n"
        "stub = BenchCounter.objects.get_by_name('machines-failover')\n"
        "async def main():\n"
        "    for _ in range(200):\n"
        "        await stub.increment()\n"
        "    print(stub.id, flush=True)\n"
        "    sys.stdin.readline()\n"
        "    start = time.perf_counter()\n"
        "    while True:\n"
        "        try:\n"
        "            value = await stub.increment()\n"
        "            break\n"
        "        except DurableObjectError:\n"
        "            await asyncio.sleep(0.01)\n"
        "    print(time.perf_counter() - start, value, flush=True)\n"
        "asyncio.run(main())\n"
    )
    client = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=client_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    machines.processes.append(client)
    hex_id = client.stdout.readline().strip()
    token = redis.Redis.from_url(machines.redis.url).get(f"do:lease:{hex_id}").decode()
    index = next(i for i, p in enumerate(hosts) if token.startswith(f"{p.pid:x}-"))
    os.kill(hosts[index].pid, signal.SIGKILL)  # the machine: host, daemon, disk
    machines.daemon(index).process.kill()
    shutil.rmtree(machines.work / f"machine-{index}", ignore_errors=True)
    client.stdin.write("go\n")
    client.stdin.flush()
    seconds, value = client.stdout.readline().split()
    client.wait(30)
    for host in hosts:
        host.kill()
        host.wait()
    machines.daemon(index).start()
    return float(seconds), int(value)


def restore_figures(machines, sizes, page_size=4096):
    """{MiB: seconds} to restore a shard of that size (pages of page_size) from SeaweedFS."""
    import sqlite3

    from durable_objects.storage.replication import (
        litestream_binary,
        restore,
        shard_replica_url,
    )

    daemon = machines.daemon(0)
    results = {}
    for mib in sizes:
        hex_id = os.urandom(32).hex()
        path = machines.work / "restore" / f"{mib}.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA page_size={int(page_size)}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE blobs(data BLOB)")
        chunk = os.urandom(1 << 20)
        for _ in range(mib):
            conn.execute("INSERT INTO blobs VALUES (?)", (chunk,))
            conn.commit()
        url = shard_replica_url(machines.seaweed.url("restore"), "bench.Blob", hex_id, 1)
        daemon.client.register(path, url)
        daemon.client.sync(path, wait=True, timeout=600)
        conn.close()
        # A restore follows the loss of the machine that replicated the shard: its daemon
        # no longer works on the shard (compacting its levels) while this one reads them.
        daemon.client.unregister(path, timeout=600)
        target = machines.work / "restore" / f"{mib}-restored.sqlite3"
        environ = {**os.environ, **machines.seaweed.env}
        result = restore(
            target,
            url,
            environ=environ,
            integrity_check="none",
            timeout=1200,
            binary=litestream_binary(),
        )
        results[mib] = result.seconds
        for file in path.parent.glob(f"{mib}*"):
            file.unlink(missing_ok=True)
    return results


DURABILITIES = ("off", "local", "replicated")


def print_writes(figures):
    """The write figures of the phases that ran (writes_only)."""
    for name, figure in figures.items():
        print(
            row(
                f"machines: {name}: writes/s 1 caller / 32 callers",
                f"{figure['one']:,.0f} / {figure['many']:,.0f}",
                f"p50 {figure['p50']:.2f} ms, p99 {figure['p99']:.2f} ms, "
                f"{figure['syncs_per_second']:,.0f} syncs/s",
            )
        )


def print_restores(restores):
    """The restore rows: seconds and MiB/s for each size, the target from 100 MiB up."""
    for mib, seconds in restores.items():
        rate = mib / seconds
        target = f"target >= 100 MiB/s {verdict(rate >= 100)}" if mib >= 100 else ""
        print(
            row(
                f"machines: restore of a {mib:,} MiB shard, s (MiB/s)",
                f"{seconds:.2f} ({rate:,.0f})",
                target,
            )
        )


def main(quick, writes_only=False, durabilities=DURABILITIES, page_size=None, restore_only=False):
    if page_size is not None:  # the hosts' settings read it (benchmarks/settings.py)
        os.environ["BENCH_SHARD_PAGE_SIZE"] = str(page_size)
        print(row("machines: shard page size, bytes", f"{page_size:,}"))
    work = Path(tempfile.mkdtemp(prefix="do-bench-machines-"))
    machines = Machines(work)
    sizes = (1, 100) if quick else (1, 100, 1024)
    try:
        if restore_only:
            print_restores(restore_figures(machines, sizes, page_size or 4096))
            return
        figures = {d: writes(machines, d, quick) for d in durabilities}
        if writes_only:
            print_writes(figures)
            return
        failover_s, failover_value = failover(machines)
        restores = restore_figures(machines, sizes, page_size or 4096)
    finally:
        machines.close()
        shutil.rmtree(work, ignore_errors=True)
    off, local, rep = figures["off"], figures["local"], figures["replicated"]
    print(
        row(
            "machines: durable writes/s, 1 caller, off / local / replicated",
            f"{off['one']:,.0f} / {local['one']:,.0f} / {rep['one']:,.0f}",
        )
    )
    print(
        row(
            "machines: durable writes/s, 32 callers, off / local / replicated",
            f"{off['many']:,.0f} / {local['many']:,.0f} / {rep['many']:,.0f}",
            f"target replicated >= 5,000 {verdict(rep['many'] >= 5000)}",
        )
    )
    print(
        row(
            "machines: write latency p50 ms, off / local / replicated",
            f"{off['p50']:.2f} / {local['p50']:.2f} / {rep['p50']:.2f}",
            f"target replicated <= 6 ms {verdict(rep['p50'] <= 6)}",
        )
    )
    print(
        row(
            "machines: write latency p99 ms, off / local / replicated",
            f"{off['p99']:.2f} / {local['p99']:.2f} / {rep['p99']:.2f}",
        )
    )
    print(
        row(
            "machines: syncs with wait/s, 32 callers, replicated",
            f"{rep['syncs_per_second']:,.0f}",
        )
    )
    for name, figure in (("local", local), ("replicated", rep)):
        if figure.get("ltx_files") is not None:
            print(
                row(
                    f"machines: LTX files (S3 PUTs) written, {name}, whole run",
                    f"{figure['ltx_files']:,}",
                )
            )
    print(
        row(
            "machines: machine loss to a successful call elsewhere, s",
            f"{failover_s:.2f}",
            f"target <= LEASE_TTL + 1 = {LEASE_TTL + 1:.1f} + restore "
            f"{verdict(failover_s <= LEASE_TTL + 1 + restores[1])}",
        )
    )
    print(row("machines: value after the failover (201 = nothing lost)", f"{failover_value}"))
    print_restores(restores)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--writes-only", action="store_true")
    parser.add_argument("--durability", action="append", choices=DURABILITIES)
    parser.add_argument("--page-size", type=int, choices=[2**n for n in range(9, 17)])
    parser.add_argument("--restore-only", action="store_true", help="only the restore figures")
    options = parser.parse_args()
    if options.child:
        child(options.quick)
    elif options.durability and not options.writes_only:
        parser.error("--durability needs --writes-only (the summary compares all three)")
    else:
        durabilities = tuple(options.durability or DURABILITIES)
        main(
            options.quick,
            options.writes_only,
            durabilities,
            options.page_size,
            options.restore_only,
        )
