"""Failures of whole machines (issue 14), each machine a network namespace with its own
disk: daphne, runobjects and a Litestream daemon per machine; Redis and SeaweedFS on the
rig's bridge; ``DURABILITY = "replicated"``.

Nothing here is timed. What is asserted is what was acknowledged and where it is after:
every acknowledged write survives the loss of its machine; a partitioned or paused
machine acknowledges nothing once the object was claimed elsewhere, and no value is
acknowledged twice (which two writers would do).
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tests.test_cluster import get_json

pytest_plugins = ["tests.support.machines"]

DEADLINE = 90  # seconds any wait for the cluster may take here


def until_ok(url, deadline=DEADLINE):
    """GET url until 200; every failure before must be retryable (or the machine not
    answering at all). Returns the body."""
    end = time.monotonic() + deadline
    errors = []
    while time.monotonic() < end:
        try:
            status, body = get_json(url, timeout=20)
        except OSError as error:  # the machine we asked is the one that is gone
            errors.append(repr(error))
            time.sleep(0.2)
            continue
        if status == 200:
            return body
        assert body.get("retryable"), body
        errors.append(body["error"])
        time.sleep(0.1)
    raise AssertionError(f"no success within {deadline} s: {errors[-5:]}")


def holder_of(rig, url):
    """The machine whose process answered the call at url."""
    body = until_ok(url)
    return rig.machine_with_pid(body["pid"]), body


def test_machine_loss_in_namespaces_keeps_every_acknowledged_write(rig, machines):
    first, second, third = machines(3)
    values = [until_ok(f"{first.url}/tally/netloss/increment/")["value"] for _ in range(20)]
    assert values == list(range(1, 21))
    holder, _ = holder_of(rig, f"{first.url}/tally/netloss/")
    holder.kill()
    holder.wipe()  # the machine and its disk are gone
    survivor = next(m for m in (first, second, third) if m is not holder)
    body = until_ok(f"{survivor.url}/tally/netloss/increment/")
    assert body["value"] == 21
    assert rig.machine_with_pid(body["pid"]) is not holder


def test_a_partitioned_machine_acknowledges_nothing_after_the_new_claim(rig, machines):
    machines_ = machines(2)
    assert until_ok(f"{machines_[0].url}/tally/split/increment/")["value"] == 1
    holder, _ = holder_of(rig, f"{machines_[0].url}/tally/split/")
    other = next(m for m in machines_ if m is not holder)
    acknowledged = []  # (machine, value) of every 200
    stop = threading.Event()

    def write_on(machine):
        """Increment through the machine, from inside its own namespace (a client the
        partition does not cut off from it)."""
        while not stop.is_set():
            done = machine.run(
                ["curl", "-s", "-m", "10", f"{machine.url}/tally/split/increment/"],
                timeout=20,
            )
            if '"value"' in done.stdout and '"error"' not in done.stdout:
                import json

                acknowledged.append((machine.name, json.loads(done.stdout)["value"]))
            time.sleep(0.05)

    with ThreadPoolExecutor(2) as pool:
        stale = pool.submit(write_on, holder)
        time.sleep(0.5)
        holder.link_down()  # the holder keeps running, cut off from Redis and the store
        body = until_ok(f"{other.url}/tally/split/increment/")  # claimed elsewhere
        claimed_at = len(acknowledged)
        fresh = pool.submit(write_on, other)
        time.sleep(3)
        holder.link_up()
        time.sleep(2)
        stop.set()
        stale.result()
        fresh.result()
    assert rig.machine_with_pid(body["pid"]) is other
    values = [value for _, value in acknowledged]
    assert len(values) == len(set(values)), "a value was acknowledged twice: two writers"
    late = [v for name, v in acknowledged[claimed_at:] if name == holder.name]
    # Whatever the stale machine acknowledged after the new claim must be a write the new
    # holder saw (the object may have moved back to it after the partition healed).
    final = until_ok(f"{other.url}/tally/split/")["value"]
    assert all(v <= final for v in values)
    assert body["value"] > max([1, *[v for name, v in acknowledged[:claimed_at]]])
    assert all(v > body["value"] for v in late)


def test_a_paused_machine_never_answers_a_write_late(rig, machines):
    machines_ = machines(2)
    assert until_ok(f"{machines_[0].url}/tally/pause/increment/")["value"] == 1
    holder, _ = holder_of(rig, f"{machines_[0].url}/tally/pause/")
    other = next(m for m in machines_ if m is not holder)
    holder.pause()  # SIGSTOP past the lease: its processes do not see time pass
    late = {}

    def ask_the_paused_one():
        try:
            late["reply"] = get_json(f"{holder.url}/tally/pause/increment/", timeout=60)
        except OSError as error:
            late["reply"] = (None, repr(error))

    asker = threading.Thread(target=ask_the_paused_one)
    asker.start()
    body = until_ok(f"{other.url}/tally/pause/increment/")
    assert body["value"] == 2 and rig.machine_with_pid(body["pid"]) is other
    for _ in range(3):
        until_ok(f"{other.url}/tally/pause/increment/")
    holder.resume()
    asker.join(90)
    status, reply = late["reply"]
    if status == 200:
        # It may have been passed on to the new holder: then it is one of its writes.
        assert rig.machine_with_pid(reply["pid"]) is other, reply
    final = until_ok(f"{other.url}/tally/pause/")["value"]
    assert final >= 5
