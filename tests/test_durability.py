"""Real processes: crash durability under SIGKILL, and the embedded storage-root lock."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from asgiref.sync import async_to_sync

from durable_objects.storage.shard import shard_path
from tests.support.objects import Counter

SCRIPT = Path(__file__).resolve().parent / "support" / "object_process.py"


def start(root, mode):
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(root), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(root, mode):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(root), mode],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def kill(process):
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()


def test_acknowledged_increments_survive_sigkill(tmp_path):
    root = tmp_path / "crash"
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    last_ack = 0
    for round_number in range(5):
        writer = start(root, "write")
        try:
            first = writer.stdout.readline()
            assert first, writer.stderr.read()
            acked = int(first)
            assert acked == last_ack + 1, f"round {round_number} (seed {seed})"
            deadline = time.monotonic() + rng.uniform(0.1, 0.6)
            while time.monotonic() < deadline:
                acked = int(writer.stdout.readline())
        finally:
            kill(writer)
        # Lines already written to the pipe are acknowledgements too.
        for line in writer.stdout.read().split():
            acked = int(line)
        stored = int(run(root, "read"))
        assert acked <= stored <= acked + 1, f"round {round_number} (seed {seed})"
        last_ack = stored


def test_second_process_on_the_same_root_is_refused(tmp_path):
    root = tmp_path / "locked"
    holder = start(root, "hold")
    try:
        assert holder.stdout.readline().strip() == "ready", holder.stderr.read()
        path = shard_path(root, "tests.Counter", str(Counter.objects.id_from_name("crash")))
        before = sorted(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.parent.iterdir()
        )
        answer = run(root, "try")
        assert answer.startswith("error StorageLocked ")
        assert f"in use by process {holder.pid}" in answer
        assert str(root) in answer
        after = sorted(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.parent.iterdir()
        )
        assert sorted(after) == sorted(before)  # the refused process never opened the shard
    finally:
        kill(holder)
    # The kernel released the lock with the holder: a new process hosts the root.
    assert run(root, "try") == "ok 1"


def test_this_process_holds_its_root_against_others(storage_root):
    async_to_sync(Counter.objects.get_by_name("crash").increment)()
    answer = run(storage_root, "try")
    assert answer.startswith("error StorageLocked ")
    assert f"in use by process {os.getpid()}" in answer


def test_a_fresh_root_reads_zero_and_creates_no_shard(tmp_path):
    root = tmp_path / "fresh"
    assert run(root, "read") == "0"
    assert list(root.glob("*/*/*/*.sqlite3")) == []


def test_a_full_disk_fails_the_write_and_the_host_serves_on(settings, tmp_path):
    """A storage root on a 4 MiB tmpfs fills up: the write that does not fit fails (not
    acknowledged, not stored), what was acknowledged stays, other objects still answer."""
    import pytest

    from durable_objects.runtime.lifecycle import reset_host
    from tests.support.objects import Sleepy

    root = tmp_path / "small"
    root.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(root)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "STORAGE_ROOT": str(root)}
        reset_host()
        other = Counter.objects.get_by_name("beside-the-full-one")
        assert async_to_sync(other.increment)() == 1
        big = Sleepy.objects.get_by_name("fills-the-disk")
        acknowledged = []
        failure = None
        for n in range(64):
            try:
                async_to_sync(big.put)(f"k{n}", "x" * 256 * 1024)
            except Exception as exc:  # sqlite3.OperationalError or ObjectReset: "full"
                failure = exc
                break
            acknowledged.append(n)
        assert failure is not None, "a 4 MiB disk took 16 MiB"
        assert "full" in str(failure).lower() or "disk" in str(failure).lower(), failure
        assert async_to_sync(big.get)(f"k{len(acknowledged)}") is None  # not stored
        for n in acknowledged:
            assert async_to_sync(big.get)(f"k{n}") == "x" * 256 * 1024
        assert async_to_sync(other.value)() == 1  # the host serves the other object
    finally:
        reset_host()
        subprocess.run(["umount", "-l", str(root)], check=False)
