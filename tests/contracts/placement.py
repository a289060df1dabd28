"""The runtime semantics of DESIGN.md section 3: ``PlacementContract``, one class per placement.

``LocalPlacementTests`` and ``RedisPlacementTests`` (test_runtime.py) run every test of it:
one event at a time, transactions, the output gate, call chains, resets, hibernation.
"""

import asyncio
import sqlite3
import threading
import time

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from durable_objects import CallTimeout, FencedError, ObjectReset, RemoteError
from durable_objects.runtime.lifecycle import get_host
from durable_objects.storage.shard import shard_path
from durable_objects.testing import evict, is_active, run_in_durable_object
from tests.support.objects import Counter, Gated, Ledger, Plain, Relay, Sleepy
from tests.support.objects_runtime import (
    AtomicCaller,
    BrokenGate,
    Failing,
    FailingConstructor,
    Order,
    SeatTaken,
    Slow,
)


def raw_value(root, stub, key):
    """Read a key straight from the shard file through a separate SQLite connection."""
    from durable_objects import serialization

    path = shard_path(root, stub._namespace.label, str(stub.id))
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM _do_kv WHERE key = ?", (key,)).fetchone()
    finally:
        conn.close()
    return serialization.loads(row[0]) if row else None


class PlacementContract:
    """What holds under every placement; subclass it once per placement.

    A subclass sets the placement up in an autouse fixture; the tests take the usual ones.
    """

    # -- one event at a time -----------------------------------------------------------------

    async def test_200_concurrent_increments_end_at_exactly_200(self):
        stub = Counter.objects.get_by_name("c200")
        results = await asyncio.gather(*(stub.increment() for _ in range(200)))
        assert sorted(results) == list(range(1, 201))
        assert await stub.value() == 200

    async def test_await_between_read_and_write_loses_no_update(self):
        stub = Counter.objects.get_by_name("slow")
        await asyncio.gather(*(stub.slow_increment() for _ in range(50)))
        assert await stub.value() == 50

    async def test_events_run_in_arrival_order(self):
        stub = Order.objects.get_by_name("order")
        await asyncio.gather(*(stub.record(i) for i in range(30)))
        assert await stub.log() == list(range(30))

    async def test_one_live_instance_per_id_keeps_memory_between_calls(self):
        stub = Counter.objects.get_by_name("memory")
        assert await stub.remember("a") == ["a"]
        assert await stub.remember("b") == ["a", "b"]
        other = Counter.objects.get_by_name("other-memory")
        assert await other.remember("c") == ["c"]

    async def test_different_ids_are_different_objects(self):
        a, b = Counter.objects.get_by_name("a"), Counter.objects.get_by_name("b")
        await a.increment(5)
        assert await b.value() == 0

    async def test_a_slow_object_does_not_block_another(self):
        slow = Slow.objects.get_by_name("slow")
        nap = asyncio.ensure_future(slow.nap(0.3))
        await asyncio.sleep(0.01)
        assert await Slow.objects.get_by_name("fast").quick() == "quick"
        assert not nap.done()
        assert await nap == "awake"

    # -- transactions and errors -------------------------------------------------------------

    async def test_raising_handler_leaves_no_write_behind(self, storage_root):
        stub = Counter.objects.get_by_name("fail")
        await stub.increment()
        with pytest.raises(ValueError, match="failed after writing") as info:
            await stub.increment_then_fail()
        assert info.value.remote is True
        assert await stub.value() == 1
        tables = await run_in_durable_object(
            stub,
            lambda obj, ctx: ctx.storage.sql.exec(
                "SELECT name FROM sqlite_schema WHERE name = 'scratch'"
            ).to_array(),
        )
        assert tables == []
        assert raw_value(storage_root, stub, "value") == 1

    async def test_instance_survives_an_exception(self):
        stub = Counter.objects.get_by_name("survives")
        await stub.remember("kept")
        with pytest.raises(ValueError):
            await stub.increment_then_fail()
        assert await stub.remember("more") == ["kept", "more"]

    async def test_exception_type_and_message_reach_the_caller(self):
        stub = Failing.objects.get_by_name("f")
        with pytest.raises(SeatTaken, match="seat 3A is taken") as info:
            await stub.domain_error()
        assert info.value.remote is True
        assert info.value.remote_type == "tests.support.objects_runtime.SeatTaken"
        assert "domain_error" in info.value.remote_traceback
        with pytest.raises(KeyError) as info:
            await stub.key_error()
        assert info.value.args == ("missing",)

    async def test_exception_that_cannot_be_rebuilt_becomes_remote_error(self):
        with pytest.raises(RemoteError, match="Picky: 1/<object") as info:
            await Failing.objects.get_by_name("f").odd_error()
        assert info.value.remote is True
        assert info.value.type_name == "Picky"

    async def test_unserializable_result_is_a_type_error_and_rolls_back(self):
        stub = Counter.objects.get_by_name("result")
        await stub.increment()
        with pytest.raises(TypeError, match="result of unserializable_result"):
            await stub.unserializable_result()
        assert await stub.value() == 1

    # -- the output gate and group commit ----------------------------------------------------

    async def test_reply_arrives_only_after_the_write_is_committed(self, storage_root):
        stub = Counter.objects.get_by_name("gate")
        for expected in range(1, 6):
            assert await stub.increment() == expected
            # A separate connection sees the write as soon as the reply is here: it committed.
            assert raw_value(storage_root, stub, "value") == expected

    async def test_concurrent_events_share_commits(self):
        stub = Counter.objects.get_by_name("group")
        await stub.increment()
        host = get_host()
        before = host.commits
        await asyncio.gather(*(stub.increment() for _ in range(100)))
        commits = host.commits - before
        assert await stub.value() == 101
        assert 1 <= commits < 50

    async def test_call_to_another_object_commits_the_writes_before_it(self):
        stub = Relay.objects.get_by_name("writer")
        with pytest.raises(RuntimeError, match="after the call"):
            await stub.write_call_fail("peer")
        assert await stub.read("before") == 1
        assert await stub.read("after") is None

    async def test_call_inside_atomic_is_refused(self):
        stub = AtomicCaller.objects.get_by_name("a")
        with pytest.raises(RuntimeError, match="not allowed inside storage.atomic"):
            await stub.call_inside_atomic()
        value = await run_in_durable_object(stub, lambda obj, ctx: ctx.storage.get("x"))
        assert value is None

    # -- call chains -------------------------------------------------------------------------

    async def test_call_chain_a_to_b_to_a_completes(self):
        assert await Relay.objects.get_by_name("A").ask_back("B") == "pong"

    async def test_independent_deadlock_is_broken_by_call_timeout(self, settings):
        settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "CALL_TIMEOUT": 0.3}
        slow = Slow.objects.get_by_name("timeout")
        with pytest.raises(CallTimeout):
            await slow.nap(1.0)
        assert issubclass(CallTimeout, Exception) and CallTimeout.retryable

    # -- reset -------------------------------------------------------------------------------

    async def test_failed_commit_resets_the_instance_and_loses_the_write(self, storage_root):
        stub = Counter.objects.get_by_name("fenced")
        await stub.increment()
        await stub.remember("in memory")
        # Another holder bumps the fencing epoch behind this activation's back.
        path = shard_path(storage_root, "tests.Counter", str(stub.id))
        conn = sqlite3.connect(path)
        conn.execute("UPDATE _do_meta SET value = value + 1 WHERE key = 'epoch'")
        conn.commit()
        conn.close()
        with pytest.raises(ObjectReset, match="Commit failed"):
            await stub.increment()
        assert await stub.value() == 1  # the refused write is gone
        assert await stub.remember("fresh") == ["fresh"]  # a new instance

    async def test_abort_resets_the_instance_and_drops_the_event_writes(self):
        stub = Counter.objects.get_by_name("abort")
        await stub.increment()
        await stub.remember("old")
        constructed = Counter.constructions
        with pytest.raises(ObjectReset, match="aborted: test"):
            await stub.abort_after_write()
        assert await stub.value() == 1
        assert await stub.remember("new") == ["new"]
        assert Counter.constructions == constructed + 1

    async def test_block_concurrency_while_runs_before_any_event(self):
        stub = Gated.objects.get_by_name("g")
        results = await asyncio.gather(*(stub.loaded_value() for _ in range(5)))
        assert results == [1] * 5
        await evict(stub)
        assert await stub.loaded_value() == 2  # the constructor ran again and saw storage

    async def test_failing_block_concurrency_while_resets_the_instance(self):
        stub = BrokenGate.objects.get_by_name("b")
        constructed = BrokenGate.constructions
        with pytest.raises(ObjectReset, match="block_concurrency_while"):
            await stub.hello()
        with pytest.raises(ObjectReset):
            await stub.hello()
        assert BrokenGate.constructions == constructed + 2

    async def test_failing_constructor_fails_the_event_and_writes_nothing(self):
        stub = FailingConstructor.objects.get_by_name("fc")
        for _ in range(2):
            with pytest.raises(RuntimeError, match="constructor failed"):
                await stub.hello()
        constructed = await run_in_durable_object(
            Plain.objects.get_by_name("unrelated"), lambda obj, ctx: "ok"
        )
        assert constructed == "ok"

    # -- hibernation and memory --------------------------------------------------------------

    async def test_hibernation_runs_the_constructor_again_and_keeps_storage(self):
        stub = Sleepy.objects.get_by_name("zz")
        constructed = Sleepy.constructions
        await stub.put("k", "v")
        assert is_active(stub)
        for _ in range(100):  # hibernate_after is 0.2 s
            await asyncio.sleep(0.05)
            if not is_active(stub):
                break
        assert not is_active(stub)
        assert await stub.get("k") == "v"
        assert Sleepy.constructions == constructed + 2

    async def test_busy_object_does_not_hibernate(self):
        stub = Slow.objects.get_by_name("busy")
        nap = asyncio.ensure_future(stub.nap(1.0))
        host = get_host()
        deadline = time.monotonic() + 10.0
        # Until the nap runs: a claim in Redis may take longer than any fixed wait.
        while (activation := host.activations.get(stub.id.key)) is None or activation.idle:
            assert time.monotonic() < deadline, "the nap never started"
            await asyncio.sleep(0.01)
        activation.hibernate_after = 0.01
        await asyncio.sleep(0.2)
        assert is_active(stub)
        assert await nap == "awake"

    async def test_host_bounds_live_instances_and_open_shards(self, settings):
        settings.DURABLE_OBJECTS = {
            **settings.DURABLE_OBJECTS,
            "MAX_ACTIVE_OBJECTS": 5,
            "MAX_OPEN_SHARDS": 3,
        }
        stubs = [Counter.objects.get_by_name(f"bound-{i}") for i in range(20)]
        for stub in stubs:
            await stub.increment()
        host = get_host()
        assert len(host.activations) <= 5
        assert len(host.open_shards) <= 3
        assert sum(a.shard is not None and a.shard.is_open for a in host.activations.values()) <= 3
        for stub in stubs:
            assert await stub.increment() == 2

    # -- callers in other threads and loops --------------------------------------------------

    async def test_sync_caller_in_a_thread_reaches_the_same_instance(self):
        stub = Counter.objects.get_by_name("threads")
        await stub.remember("from async")
        remembered = await sync_to_async(async_to_sync(stub.remember), thread_sensitive=False)(
            "sync"
        )
        assert remembered == ["from async", "sync"]

    def test_sync_callers_without_a_loop_use_a_background_host(self):
        stub = Counter.objects.get_by_name("background")
        for expected in range(1, 4):
            assert async_to_sync(stub.increment)() == expected
        assert async_to_sync(stub.remember)("x") == ["x"]

    async def test_sql_object_created_in_constructor(self):
        stub = Ledger.objects.get_by_name("ledger")
        assert await stub.add(5) == {"id": 1, "amount": 5}
        await stub.add(7)
        assert await stub.total() == 12

    # -- found in review ---------------------------------------------------------------------

    async def test_abort_stands_even_when_the_handler_catches_it(self):
        from tests.support.objects_runtime import Catcher

        stub = Catcher.objects.get_by_name("catch")
        with pytest.raises(ObjectReset, match="aborted: caught"):
            await stub.abort_and_catch()
        assert await stub.read() is None

    async def test_fenced_reopen_resets_the_instance(self, settings, storage_root):
        settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "MAX_OPEN_SHARDS": 1}
        stub = Counter.objects.get_by_name("reopen")
        await stub.increment()
        await stub.remember("stale memory")
        await Counter.objects.get_by_name("other").increment()  # closes the first shard
        assert not get_host().activations[stub.id.key].shard.is_open
        path = shard_path(storage_root, "tests.Counter", str(stub.id))
        conn = sqlite3.connect(path)
        conn.execute("UPDATE _do_meta SET value = value + 1 WHERE key = 'epoch'")
        conn.commit()
        conn.close()
        with pytest.raises(FencedError, match="newer activation") as info:
            await stub.increment()
        assert info.value.remote and info.value.retryable
        assert await stub.remember("fresh") == ["fresh"]
        assert await stub.increment() == 2

    async def test_a_shard_reopens_on_a_commit_thread_while_others_are_at_work(
        self, settings, monkeypatch
    ):
        from tests.support.threads import record_threads

        settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "MAX_OPEN_SHARDS": 1}
        stub = Counter.objects.get_by_name("reopen-off-loop")
        await stub.increment()
        await Counter.objects.get_by_name("other").increment()  # closes the first shard
        assert not get_host().activations[stub.id.key].shard.is_open
        opened_on = record_threads(monkeypatch, "open")
        nap = asyncio.ensure_future(Slow.objects.get_by_name("busy").nap(0.3))
        await asyncio.sleep(0.05)  # the napping object is at work
        assert await stub.increment() == 2
        assert opened_on == [opened_on[0]] and opened_on[0].startswith("durable-objects-commit")
        assert await nap == "awake"
        opened_on.clear()
        await Counter.objects.get_by_name("other").increment()  # nothing else at work now
        assert opened_on == [threading.main_thread().name]

    async def test_a_fenced_reopen_off_the_loop_resets_the_instance(self, settings, storage_root):
        settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "MAX_OPEN_SHARDS": 1}
        stub = Counter.objects.get_by_name("reopen-fenced")
        await stub.increment()
        await stub.remember("stale memory")
        await Counter.objects.get_by_name("other").increment()  # closes the first shard
        path = shard_path(storage_root, "tests.Counter", str(stub.id))
        conn = sqlite3.connect(path)
        conn.execute("UPDATE _do_meta SET value = value + 1 WHERE key = 'epoch'")
        conn.commit()
        conn.close()
        nap = asyncio.ensure_future(Slow.objects.get_by_name("busy").nap(0.3))
        await asyncio.sleep(0.05)
        with pytest.raises(FencedError, match="newer activation"):
            await stub.increment()
        assert await stub.remember("fresh") == ["fresh"]
        assert await stub.increment() == 2
        assert await nap == "awake"

    async def test_callers_id_is_not_changed_by_the_object(self):
        named = Counter.objects.get_by_name("copy")
        await named.increment()
        await evict(named)
        stub = Counter.objects.get(str(named.id))
        assert await stub.my_name() == "copy"
        assert stub.id.name is None

    async def test_arguments_are_serialized_when_the_call_is_made(self):
        stub = Counter.objects.get_by_name("early")
        item = ["before"]
        pending = stub.remember(item)
        item.append("after the call")
        assert await pending == [["before"]]
        with pytest.raises(TypeError, match="argument 'item'"):
            stub.remember(object())  # raised by the call itself, nothing to await

    async def test_oversized_result_is_refused_and_the_instance_stays(self, settings):
        from tests.support.objects_runtime import Catcher

        settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "MAX_CALL_SIZE": 1000}
        stub = Catcher.objects.get_by_name("big")
        with pytest.raises(ValueError, match=r"result of big_result\(\) are \d+ bytes"):
            await stub.big_result(5000)
        assert await stub.big_result(10) == "x" * 10

    async def test_thread_sensitive_code_in_an_object_called_from_a_sync_view(self):
        from tests.support.objects_runtime import ThreadSensitive

        stub = ThreadSensitive.objects.get_by_name("ts")

        def sync_view():
            return async_to_sync(stub.blocking_work)()

        assert await sync_to_async(sync_view)() == "done"
        assert await stub.blocking_work() == "done"

    def test_thread_sensitive_code_in_an_object_called_from_sync_code(self):
        from tests.support.objects_runtime import ThreadSensitive

        stub = ThreadSensitive.objects.get_by_name("ts-sync")
        assert async_to_sync(stub.blocking_work)() == "done"
        assert async_to_sync(stub.blocking_work)() == "done"

    async def test_waking_reuses_the_parked_shard_until_its_room_is_needed(self, settings):
        settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "MAX_OPEN_SHARDS": 2}
        stub = Counter.objects.get_by_name("parked")
        await stub.increment()
        host = get_host()
        connection = host.activations[stub.id.key].shard.conn
        await evict(stub)
        assert not is_active(stub)
        assert host.open_shards[stub.id.key].conn is connection  # parked, still open
        assert await stub.increment() == 2  # a new activation, with a new epoch
        assert host.activations[stub.id.key].shard.conn is connection
        await evict(stub)
        for name in ("p1", "p2"):  # two other objects need the room
            await Counter.objects.get_by_name(name).increment()
        assert stub.id.key not in host.open_shards
        assert len(host.open_shards) == 2
        assert await stub.increment() == 3  # reopened from disk
