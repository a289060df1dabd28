"""The alarm contract: ``AlarmContract``, subclassed once per backend.

``LocalAlarmContractTests`` (test_alarms.py) and ``RQAlarmContractTests`` (test_alarms_rq.py)
run every test of it. Each test takes ``alarms``, a driver with ``stub(name)`` (a stub of
``Alarmed``) and ``slack`` (seconds a delivery may take beyond its due time on that backend:
the local timer is prompt, RQ's scheduler polls once a second). Deadlines are generous
bounds on "eventually", not measurements; the benchmark measures lateness.
"""

import asyncio
import time

from durable_objects import DurableObjectError


async def wait_for(check, timeout, interval=0.05):
    """Await check() until it returns something true; return it, or fail at timeout.

    A retryable error (ObjectUnavailable while a cluster recovers) counts as not yet.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await check()
        except DurableObjectError as exc:
            if not exc.retryable:
                raise
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"still waiting after {timeout} s"
        await asyncio.sleep(interval)


async def fired_rows(stub, count=1):
    rows = await stub.fired()
    return rows if len([r for r in rows if r["retry_count"] >= 0]) >= count else None


class AlarmContract:
    """What every alarm backend keeps; subclass it once per backend.

    The test module of the subclass provides the ``alarms`` fixture, the backend's driver.
    """

    async def test_fires_on_time(self, alarms):
        stub = alarms.stub("on-time")
        due = time.time() + 0.5
        assert await stub.arm(due) == due
        [row] = await wait_for(lambda: fired_rows(stub), 10 + alarms.slack)
        assert row["at"] >= due  # at or after the time set, never before
        assert row["scheduled"] == due
        assert row["alarm_inside"] is None  # get_alarm() inside the handler
        assert row["retry_count"] == 0
        assert await stub.alarm_time() is None
        status = await stub.status()
        assert status["last_fired_at"] >= due and status["due_at"] is None

    async def test_cancelled_and_replaced_alarms_never_fire(self, alarms):
        cancelled, replaced = alarms.stub("cancelled"), alarms.stub("replaced")
        soon = time.time() + 0.4
        await cancelled.arm(soon)
        await cancelled.cancel()
        await replaced.arm(soon)
        await replaced.arm(time.time() + 3600)  # set_alarm replaces the one alarm
        await asyncio.sleep(1.5 + alarms.slack)
        assert await cancelled.fired() == []
        assert await cancelled.alarm_time() is None
        assert await replaced.fired() == []
        assert await replaced.alarm_time() > time.time() + 3000

    async def test_retried_with_backoff_until_success(self, alarms, tmp_path):
        stub = alarms.stub("retried")
        attempts = tmp_path / "attempts.txt"
        await stub.configure(fail_times=2, attempts_file=str(attempts))
        await stub.arm(time.time())
        [row] = await wait_for(lambda: fired_rows(stub), 20 + 3 * alarms.slack)
        assert row["retry_count"] == 2  # info.retry_count of the run that succeeded
        # The failed runs' writes rolled back: only the success is in the table.
        assert [r["retry_count"] for r in await stub.fired()] == [2]
        lines = [line.split() for line in attempts.read_text().splitlines()]
        assert [int(count) for _, count in lines] == [0, 1, 2]
        times = [float(at) for at, _ in lines]
        base = alarms.retry_base
        assert times[1] - times[0] >= base  # backoff from ALARM_RETRY_BASE, doubling
        assert times[2] - times[1] >= 2 * base
        status = await stub.status()
        assert status["retry_count"] == 0 and "failing on purpose" in status["last_error"]

    async def test_abandoned_after_the_last_retry(self, alarms, tmp_path):
        stub = alarms.stub("abandoned")
        attempts = tmp_path / "attempts.txt"
        await stub.configure(fail_times=1000, attempts_file=str(attempts))
        await stub.arm(time.time())

        async def abandoned():
            status = await stub.status()
            return status if status and status["abandoned_at"] else None

        status = await wait_for(abandoned, 30 + 4 * alarms.slack)
        retries = alarms.max_retries
        assert status["retry_count"] == retries + 1
        assert status["due_at"] is None and status["scheduled_at"] is None
        assert "failing on purpose" in status["last_error"]
        assert await stub.alarm_time() is None
        await asyncio.sleep(alarms.retry_base * 2 + alarms.slack)  # and nothing more runs
        assert len(attempts.read_text().splitlines()) == retries + 1

    async def test_a_handler_that_rearms_fires_again(self, alarms):
        stub = alarms.stub("rearmed")
        await stub.configure(rearm=2, rearm_after=0.3)
        await stub.arm(time.time() + 0.2)
        rows = await wait_for(lambda: fired_rows(stub, 3), 10 + 3 * alarms.slack)
        assert len(rows) == 3
        assert rows[1]["at"] >= rows[0]["at"] + 0.3
        await asyncio.sleep(0.6 + alarms.slack)
        assert len(await stub.fired()) == 3  # rearm ran out: no fourth
        assert await stub.alarm_time() is None

    async def test_a_time_in_the_past_fires_at_once(self, alarms):
        stub = alarms.stub("past")
        await stub.arm(0)  # 1970
        [row] = await wait_for(lambda: fired_rows(stub), 10 + alarms.slack)
        assert row["scheduled"] == 0

    async def test_a_thousand_alarms_due_in_the_same_second_all_fire(self, alarms):
        stubs = [alarms.stub(f"many-{n}") for n in range(1000)]
        due = time.time() + 20.0
        # A few at a time: creating a shard (its schema, its first fsync) runs on the host's
        # loop, and a burst of them on a loaded machine holds a cluster host's heartbeat up.
        for start in range(0, 1000, 5):
            await asyncio.gather(*(stub.arm(due) for stub in stubs[start : start + 5]))

        done = set()

        async def all_fired():
            pending = [n for n in range(len(stubs)) if n not in done]
            for start in range(0, len(pending), 100):
                chunk = pending[start : start + 100]
                results = await asyncio.gather(*(stubs[n].fired() for n in chunk))
                done.update(n for n, rows in zip(chunk, results, strict=True) if rows)
            return len(done) == len(stubs)

        await asyncio.sleep(max(0.0, due - time.time()))
        await wait_for(all_fired, 60 + alarms.slack, interval=0.5)
        for start in range(0, 1000, 200):
            chunk = stubs[start : start + 200]
            for rows in await asyncio.gather(*(stub.fired() for stub in chunk)):
                assert len(rows) == 1 and rows[0]["at"] >= due
