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
