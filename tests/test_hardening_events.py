"""Stuck and crossing events (issue 13, items 11 to 13): deadlines, threads, deadlocks."""

import asyncio
import logging
import threading
import time

import pytest
from asgiref.sync import async_to_sync

from durable_objects import DeadlockError, DurableObject, ObjectReset
from durable_objects.runtime.lifecycle import get_host
from durable_objects.testing import is_active
from tests.support.threads import record_threads


class Hanging(DurableObject):
    """An object whose hang() awaits forever."""

    constructions = 0

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        type(self).constructions += 1

    async def hang(self):
        self.ctx.storage.put("hung", True)
        await asyncio.Event().wait()

    def ping(self):
        return "pong"

    def hung(self):
        return self.ctx.storage.get("hung", False)


class Blocking(DurableObject):
    """Sync methods that block, run on a worker thread."""

    class Meta:
        run_sync_on_thread = True

    def block(self, seconds):
        time.sleep(seconds)
        self.ctx.storage.put("blocked", self.ctx.storage.get("blocked", 0) + 1)
        return threading.current_thread().name

    def slow_increment(self):
        value = self.ctx.storage.get("value", 0)
        time.sleep(0.02)
        self.ctx.storage.put("value", value + 1)
        return value + 1

    def value(self):
        return self.ctx.storage.get("value", 0)

    def blocked(self):
        return self.ctx.storage.get("blocked", 0)

    def fetch(self, request):
        from django.http import HttpResponse

        time.sleep(0.01)
        return HttpResponse(threading.current_thread().name)


class LoopHog(DurableObject):
    """A sync method that blocks the event loop."""

    def hog(self, seconds):
        time.sleep(seconds)
        return "done"


class Crossing(DurableObject):
    """Calls another Crossing object after a pause, inside its own event."""

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.calls = []

    async def call_after(self, other, pause):
        await asyncio.sleep(pause)
        try:
            return await Crossing.objects.get_by_name(other).touch(self.ctx.id.name)
        except DeadlockError as exc:
            return f"deadlock: {exc}"

    async def relay(self, first, second, pause):
        """Call first, which calls second after pause (a chain of two hops)."""
        return await Crossing.objects.get_by_name(first).call_after(second, pause)

    def touch(self, caller):
        self.calls.append(caller)
        return f"touched by {caller}"

    async def back_and_forth(self, other):
        """A calls B calls A: one chain, let in, never a deadlock."""
        return await Crossing.objects.get_by_name(other).touch_back(self.ctx.id.name)

    async def touch_back(self, other):
        return await Crossing.objects.get_by_name(other).touch(self.ctx.id.name)


def configure(settings, **values):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, **values}


# -- 11: the event deadline ----------------------------------------------------------------


async def test_an_event_past_event_deadline_resets_the_object_and_fails_retryably(settings):
    configure(settings, EVENT_DEADLINE=0.3, CALL_TIMEOUT=10.0)
    stub = Hanging.objects.get_by_name("deadline")
    assert await stub.ping() == "pong"
    before = Hanging.constructions
    hanging = asyncio.ensure_future(stub.hang())
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(stub.ping())  # waits behind the hanging event
    with pytest.raises(ObjectReset, match="EVENT_DEADLINE") as caught:
        await asyncio.wait_for(hanging, 5)
    assert caught.value.retryable
    assert await asyncio.wait_for(queued, 5) == "pong"  # run by a fresh instance
    assert Hanging.constructions == before + 1
    assert await stub.hung() is False  # the stuck event's write was rolled back


async def test_events_within_the_deadline_are_untouched(settings):
    configure(settings, EVENT_DEADLINE=5.0)
    stub = Hanging.objects.get_by_name("quick")
    before = Hanging.constructions
    for _ in range(20):
        assert await stub.ping() == "pong"
    await asyncio.sleep(0.1)
    assert Hanging.constructions == before + 1


async def test_a_forced_evict_resets_a_stuck_object_at_once(settings):
    configure(settings, EVENT_DEADLINE=60.0, CALL_TIMEOUT=10.0)
    stub = Hanging.objects.get_by_name("forced")
    hanging = asyncio.ensure_future(stub.hang())
    await asyncio.sleep(0.05)
    host = get_host()
    await host.evict([stub.id.key], force=True)
    with pytest.raises(ObjectReset, match="evicted"):
        await asyncio.wait_for(hanging, 2)
    assert not is_active(stub)
    assert await asyncio.wait_for(stub.ping(), 2) == "pong"


def test_the_admins_evict_resets_a_stuck_object(settings):
    from durable_objects.admin import calls as admin_calls
    from durable_objects.models import ObjectRecord

    configure(settings, EVENT_DEADLINE=60.0, CALL_TIMEOUT=0.3)
    stub = Hanging.objects.get_by_name("admin-stuck")
    host = get_host()
    hanging = asyncio.run_coroutine_threadsafe(stub.hang(), host.loop)
    time.sleep(0.05)
    record = ObjectRecord(label=stub._namespace.label, object_id=str(stub.id), name="admin-stuck")
    with pytest.raises(admin_calls.ObjectUnreachable, match="busy"):
        admin_calls.run(record, "evict", write=True)  # queued behind the stuck event
    with pytest.raises(Exception):  # noqa: B017, the hanging call's own CallTimeout
        hanging.result(2)
    for _ in range(100):
        if not is_active(stub):
            break
        time.sleep(0.01)
    assert not is_active(stub)  # reset, not left stuck
    assert async_to_sync(stub.ping)() == "pong"  # answered at once by a fresh instance


@pytest.mark.django_db(transaction=True)
def test_the_admins_evict_page_says_a_stuck_object_was_reset(settings, admin_client):
    from django.contrib.admin.models import LogEntry
    from django.urls import reverse

    from durable_objects.models import ObjectRecord

    configure(settings, EVENT_DEADLINE=60.0, CALL_TIMEOUT=0.3)
    stub = Hanging.objects.get_by_name("admin-page-stuck")
    host = get_host()
    hanging = asyncio.run_coroutine_threadsafe(stub.hang(), host.loop)
    deadline = time.monotonic() + 10  # the activation's record, however loaded the machine
    while True:
        time.sleep(0.05)
        host.catalog.flush_sync()
        record = ObjectRecord.objects.filter(object_id=str(stub.id)).first()
        if record is not None or time.monotonic() > deadline:
            break
    assert record is not None, "the stuck object never reached the catalog"
    path = reverse("admin:durable_objects_objectrecord_evict", args=[record.pk])
    assert admin_client.post(path).status_code == 302
    assert not is_active(stub)  # reset (the detail page below wakes it again)
    text = admin_client.get(
        reverse("admin:durable_objects_objectrecord_change", args=[record.pk])
    ).content.decode()
    assert "it was reset" in text and "busy" not in text
    changes = [e.get_change_message() for e in LogEntry.objects.filter(object_id=str(record.pk))]
    assert changes == ["Reset the stuck instance."]
    with pytest.raises(Exception):  # noqa: B017, the hanging call's own CallTimeout
        hanging.result(2)


# -- 12: sync handlers on a worker thread ---------------------------------------------------


async def test_a_blocking_sync_method_on_a_thread_does_not_hold_up_other_objects():
    blocking = Blocking.objects.get_by_name("blocking")
    other = Hanging.objects.get_by_name("meanwhile")
    assert await other.ping() == "pong"
    started = asyncio.ensure_future(blocking.block(0.5))
    await asyncio.sleep(0.05)
    assert await asyncio.wait_for(other.ping(), 0.3) == "pong"  # the loop is free
    assert not started.done()
    assert (await started).startswith("durable-objects-sync")
    assert await blocking.blocked() == 1


async def test_threaded_sync_methods_still_run_one_at_a_time_per_object():
    stub = Blocking.objects.get_by_name("serial")
    results = await asyncio.gather(*(stub.slow_increment() for _ in range(10)))
    assert sorted(results) == list(range(1, 11))
    assert await stub.value() == 10


async def test_a_threaded_sync_fetch_runs_on_a_worker_thread():
    response = await Blocking.objects.get_by_name("fetched").fetch("/")
    assert response.content.decode().startswith("durable-objects-sync")


async def test_a_threaded_handler_past_the_deadline_is_reset_and_the_object_recovers(settings):
    configure(settings, EVENT_DEADLINE=0.2, CALL_TIMEOUT=10.0)
    stub = Blocking.objects.get_by_name("stuck-thread")
    assert await stub.slow_increment() == 1
    with pytest.raises(ObjectReset, match="EVENT_DEADLINE"):
        await asyncio.wait_for(stub.block(1.0), 5)
    assert await asyncio.wait_for(stub.slow_increment(), 5) == 2
    await asyncio.sleep(1.0)  # the reset thread ends; its write is refused, not committed
    assert await stub.blocked() == 0
    assert await stub.value() == 2


def test_run_sync_on_thread_must_be_a_bool():
    with pytest.raises(ValueError, match="run_sync_on_thread must be True or False"):

        class BadThreaded(DurableObject):
            class Meta:
                abstract = True
                run_sync_on_thread = "yes"


async def test_a_sync_handler_that_holds_the_loop_is_named_in_a_warning(settings, caplog):
    configure(settings, SLOW_HANDLER_WARNING=0.05)
    with caplog.at_level(logging.WARNING, logger="durable_objects.runtime"):
        assert await LoopHog.objects.get_by_name("hog").hog(0.1) == "done"
    messages = [r.getMessage() for r in caplog.records if r.name == "durable_objects.runtime"]
    assert any("tests.LoopHog.hog() held the event loop" in m for m in messages), messages


async def test_the_slow_handler_warning_is_off_outside_debug(settings, caplog):
    settings.DEBUG = False
    configure(settings)  # a fresh host reads the threshold
    with caplog.at_level(logging.WARNING, logger="durable_objects.runtime"):
        assert await LoopHog.objects.get_by_name("quiet-hog").hog(0.12) == "done"
    assert not [r for r in caplog.records if "held the event loop" in r.getMessage()]


async def test_the_slow_handler_warning_is_on_in_debug(settings, caplog):
    settings.DEBUG = True
    configure(settings)
    with caplog.at_level(logging.WARNING, logger="durable_objects.runtime"):
        assert await LoopHog.objects.get_by_name("debug-hog").hog(0.12) == "done"
    assert [r for r in caplog.records if "held the event loop" in r.getMessage()]


# -- 13: crossing call chains ---------------------------------------------------------------


async def test_two_crossing_call_chains_fail_one_call_at_once_with_deadlock_error(settings):
    configure(settings, CALL_TIMEOUT=10.0)
    a, b = Crossing.objects.get_by_name("a"), Crossing.objects.get_by_name("b")
    started = time.monotonic()
    first = asyncio.ensure_future(a.call_after("b", 0.05))  # A waits on B ...
    second = asyncio.ensure_future(b.call_after("a", 0.2))  # ... while B waits on A
    results = await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert time.monotonic() - started < 5  # not CALL_TIMEOUT
    deadlocks = [r for r in results if r.startswith("deadlock")]
    assert len(deadlocks) == 1, results
    assert "tests.Crossing 'b'" in deadlocks[0] and "tests.Crossing 'a'" in deadlocks[0]
    assert "touched by a" in results  # the other call went through once B's event ended


async def test_a_deadlock_error_reaches_the_callers_caller_as_itself(settings):
    configure(settings, CALL_TIMEOUT=10.0)

    async def call_and_raise():
        return await Crossing.objects.get_by_name("c").call_after("d", 0.05)

    a = asyncio.ensure_future(call_and_raise())
    b = asyncio.ensure_future(Crossing.objects.get_by_name("d").call_after("c", 0.2))
    results = await asyncio.wait_for(asyncio.gather(a, b), 5)
    assert sum(r.startswith("deadlock") for r in results) == 1


async def test_a_cycle_of_three_objects_through_a_relay_is_detected(settings):
    configure(settings, CALL_TIMEOUT=10.0)
    # X relays to Y, which calls Z after a pause; Z calls X after a longer one. X waits on
    # Y, Y waits on Z (queued behind Z's event), Z waits on X (queued behind X's event).
    x, z = Crossing.objects.get_by_name("x"), Crossing.objects.get_by_name("z")
    first = asyncio.ensure_future(x.relay("y", "z", 0.05))
    second = asyncio.ensure_future(z.call_after("x", 0.3))
    results = await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert sum(r.startswith("deadlock") for r in results) == 1, results


async def test_one_chain_coming_back_is_not_a_deadlock():
    a = Crossing.objects.get_by_name("chain-a")
    assert await a.back_and_forth("chain-b") == "touched by chain-b"


async def test_independent_callers_of_a_busy_object_are_not_deadlocks(settings):
    configure(settings, CALL_TIMEOUT=10.0)
    # Many objects call one object at once: they wait in its queue, none waits on another.
    results = await asyncio.gather(
        *(Crossing.objects.get_by_name(f"fan-{i}").call_after("hub", 0.01) for i in range(20))
    )
    assert not [r for r in results if r.startswith("deadlock")]


# -- shards opened and created on the worker thread (issue 17) -----------------------------


async def test_a_threaded_handler_creates_its_shard_on_its_worker_thread(monkeypatch):
    from durable_objects.runtime.lifecycle import reset_host

    opened_on = record_threads(monkeypatch, "open_and_claim")
    stub = Blocking.objects.get_by_name("created-on-worker")
    assert await stub.slow_increment() == 1
    loop_thread = threading.current_thread().name
    assert len(opened_on) == 1 and opened_on[0] != loop_thread  # not the loop's
    host = get_host()
    activation = host.activations[stub.id.key]
    assert host.open_shards[stub.id.key] is activation.shard and activation.shard.is_open
    meta = activation.shard.all_meta()
    assert (meta["label"], meta["id"], meta["name"]) == (
        "tests.Blocking",
        str(stub.id),
        "created-on-worker",
    )
    assert meta["epoch"] == activation.epoch == 1
    reset_host()  # every shard closed: the next call opens the file again
    assert await stub.slow_increment() == 2
    assert opened_on[1] != loop_thread


async def test_a_parked_shard_is_claimed_on_the_worker_thread(monkeypatch):
    from durable_objects.testing import evict

    stub = Blocking.objects.get_by_name("parked-on-worker")
    assert await stub.slow_increment() == 1
    await evict(stub)  # hibernated; its shard stays open, parked in the host
    claimed_on = record_threads(monkeypatch, "claim_epoch")
    assert await stub.slow_increment() == 2
    assert len(claimed_on) == 1 and claimed_on[0] != threading.current_thread().name
    activation = get_host().activations[stub.id.key]
    assert activation.epoch == 2 and get_host().open_shards[stub.id.key] is activation.shard


async def test_a_reset_while_the_worker_creates_the_shard_fails_it_and_closes_the_shard(
    monkeypatch,
):
    from durable_objects.storage.shard import Shard

    opening, release, opened = threading.Event(), threading.Event(), []
    real = Shard.open_and_claim

    def slow_open(shard, **kwargs):
        result = real(shard, **kwargs)
        opened.append(shard)
        opening.set()
        release.wait(5)
        return result

    monkeypatch.setattr(Shard, "open_and_claim", slow_open)
    stub = Blocking.objects.get_by_name("reset-while-creating")
    call = asyncio.ensure_future(stub.slow_increment())
    assert await asyncio.to_thread(opening.wait, 5)
    await get_host().evict([stub.id.key], force=True)
    release.set()
    with pytest.raises(ObjectReset, match="evicted"):
        await asyncio.wait_for(call, 5)
    for _ in range(200):  # closed on a commit thread once the worker hands it back
        if not opened[0].is_open:
            break
        await asyncio.sleep(0.01)
    assert not opened[0].is_open
    assert get_host().open_shards.get(stub.id.key) is not opened[0]
    monkeypatch.setattr(Shard, "open_and_claim", real)
    assert await asyncio.wait_for(stub.slow_increment(), 5) == 1  # nothing was written
    assert get_host().activations[stub.id.key].epoch == 2  # past the reset worker's claim
