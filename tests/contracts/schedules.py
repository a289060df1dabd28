"""The schedule contract: ``ScheduleContract``, subclassed once per alarm backend.

``LocalScheduleContractTests`` (test_schedules.py) and ``RQScheduleContractTests``
(test_schedules_rq.py) run every test of it. Each test takes ``schedules``, a driver with
``stub(name)`` (a stub of ``Scheduled``), ``slack`` (seconds a delivery may take past its
time on that backend), ``retry_base`` and ``max_retries``. Deadlines are bounds on
"eventually", not measurements; benchmarks/schedules.py measures lateness.

``Scheduled`` hibernates after half a second idle, so every schedule due later than that
wakes a hibernated object: ``booted`` in a run's row is when its instance was made.
"""

import asyncio
import time

import pytest

from tests.contracts.alarms import wait_for


async def runs_of(stub, tag, count=1):
    rows = await stub.runs(tag)
    return rows if len(rows) >= count else None


class ScheduleContract:
    """What every alarm backend keeps for schedules and the queue."""

    async def test_info_is_none_outside_a_run(self, schedules):
        assert await schedules.stub("outside").info_outside_a_run() is None

    async def test_a_delay_runs_at_or_after_its_time_with_its_info(self, schedules):
        stub = schedules.stub("delay")
        planned = time.time()
        schedule_id = await stub.plan(1.0, "record", "delayed")
        [row] = await wait_for(lambda: runs_of(stub, "delayed"), 10 + schedules.slack)
        assert row["at"] >= row["scheduled"] >= planned + 1.0
        assert (row["schedule_id"], row["kind"], row["retry_count"]) == (
            schedule_id,
            "delayed",
            0,
        )
        assert await stub.schedules() == []  # a one-shot schedule is gone after its run

    async def test_a_schedule_wakes_a_hibernated_object(self, schedules):
        stub = schedules.stub("hibernated")
        planned = time.time()
        await stub.plan(1.5, "record", "woken")
        await stub.push("record", "before")
        await asyncio.sleep(2.5 + schedules.slack)  # no calls meanwhile: it hibernates
        [before, row] = await wait_for(lambda: runs_of(stub, None, 2), 10 + schedules.slack)
        assert before["tag"] == "before" and before["booted"] < planned + 0.5
        assert row["tag"] == "woken"
        assert row["booted"] > before["at"] + 0.5  # a new instance ran it

    async def test_a_date_runs_at_or_after_it(self, schedules):
        stub = schedules.stub("date")
        when = time.time() + 0.5
        await stub.plan_at(when, "record", "dated", id="the-date")
        [row] = await wait_for(lambda: runs_of(stub, "dated"), 10 + schedules.slack)
        assert row["scheduled"] == pytest.approx(when, abs=1e-6)  # a datetime holds µs
        assert row["at"] >= row["scheduled"]
        assert (row["schedule_id"], row["kind"]) == ("the-date", "scheduled")

    async def test_a_cron_schedule_runs_at_each_match_and_stays(self, schedules):
        stub = schedules.stub("cron")
        await stub.plan("* * * * * *", "record", "cron", id="every-second")  # seconds first
        rows = await wait_for(lambda: runs_of(stub, "cron", 3), 20 + 3 * schedules.slack)
        times = [row["scheduled"] for row in rows]
        assert all(t == int(t) for t in times)  # the matches are whole seconds
        assert times == sorted(set(times))  # each match ran once, in order
        assert all(row["at"] >= row["scheduled"] for row in rows)
        [listed] = await stub.schedules()
        assert listed["kind"] == "cron" and listed["cron"] == "* * * * * *"
        assert listed["runs"] >= 3 and listed["time"] > times[-1]
        assert await stub.cancel("every-second") is True
        count = len(await stub.runs("cron"))
        await asyncio.sleep(1.5 + schedules.slack)
        assert len(await stub.runs("cron")) <= count + 1  # one may have been under way
        assert await stub.schedules() == []

    async def test_an_interval_runs_again_and_again_in_phase(self, schedules):
        stub = schedules.stub("interval")
        await stub.plan_every(0.7, "record", "tick", id="tick")
        rows = await wait_for(lambda: runs_of(stub, "tick", 3), 20 + 3 * schedules.slack)
        first = rows[0]["scheduled"]
        for row in rows:
            steps = (row["scheduled"] - first) / 0.7
            assert abs(steps - round(steps)) < 1e-6  # on the interval's grid
            assert row["at"] >= row["scheduled"] and row["kind"] == "interval"
        assert await stub.cancel("tick") is True
        assert await stub.cancel("tick") is False

    async def test_cancelled_and_replaced_schedules_never_run(self, schedules):
        stub = schedules.stub("replaced")
        await stub.plan(0.4, "record", "cancelled", id="a")
        await stub.plan(0.4, "record", "old", id="b")
        await stub.plan(3600, "record", "new", id="b")  # the same id replaces it
        assert await stub.cancel("a") is True
        await asyncio.sleep(1.5 + schedules.slack)
        assert await stub.runs() == []
        [listed] = await stub.schedules()
        assert listed["id"] == "b" and listed["args"] == ["new"]
        assert listed["time"] > time.time() + 3000

    async def test_an_event_that_rolls_back_schedules_and_enqueues_nothing(self, schedules):
        stub = schedules.stub("rolled-back")
        try:
            await stub.plan_and_fail(0.2)
        except RuntimeError as exc:
            assert "rolled back" in str(exc)
        else:
            raise AssertionError("plan_and_fail() did not raise")
        assert await stub.schedules() == [] and await stub.queue() == []
        await asyncio.sleep(1.0 + schedules.slack)
        assert await stub.runs() == []

    async def test_a_failing_run_is_retried_with_backoff_until_it_succeeds(
        self, schedules, tmp_path
    ):
        stub = schedules.stub("retried")
        attempts = tmp_path / "attempts.txt"
        await stub.configure(fail_times=2, attempts_file=str(attempts))
        await stub.plan(0, "flaky", "retried", id="flaky")
        [row] = await wait_for(lambda: runs_of(stub, "retried"), 30 + 3 * schedules.slack)
        assert row["retry_count"] == 2  # the info of the run that succeeded
        assert await stub.runs("retried-failed") == []  # the failures' writes rolled back
        lines = [line.split() for line in attempts.read_text().splitlines()]
        assert [int(count) for _, count, _ in lines] == [0, 1, 2]
        times = [float(at) for at, _, _ in lines]
        assert times[1] - times[0] >= schedules.retry_base
        assert times[2] - times[1] >= 2 * schedules.retry_base
        assert await stub.schedules() == []

    async def test_a_run_that_always_fails_is_dropped_after_the_last_retry(
        self, schedules, tmp_path
    ):
        stub = schedules.stub("dropped")
        attempts = tmp_path / "attempts.txt"
        await stub.configure(fail_times=1000, attempts_file=str(attempts))
        await stub.plan(0, "flaky", "doomed", id="doomed")
        await stub.push("flaky", "doomed-task")
        await stub.push("record", "after-the-dropped-task")  # waits for it, then runs

        async def both_dropped():
            return not await stub.schedules() and await runs_of(stub, "after-the-dropped-task")

        await wait_for(both_dropped, 60 + 8 * schedules.slack)
        lines = attempts.read_text().splitlines()
        retries = schedules.max_retries
        assert sum(line.endswith(" doomed") for line in lines) == retries + 1
        assert sum(line.endswith(" doomed-task") for line in lines) == retries + 1
        assert await stub.queue() == []
        await asyncio.sleep(schedules.retry_base * 2 + schedules.slack)
        assert len(attempts.read_text().splitlines()) == len(lines)  # nothing more ran

    async def test_a_repeating_schedule_goes_on_after_a_run_is_dropped(self, schedules):
        stub = schedules.stub("dropped-repeating")
        await stub.configure(fail_times=1000)
        await stub.plan_every(0.3, "flaky", "never", id="rep")

        async def dropped_once():
            listed = await stub.schedule_of("rep")
            return listed if listed["last_error"] and listed["retry_count"] == 0 else None

        listed = await wait_for(dropped_once, 60 + 8 * schedules.slack)
        assert "failing on purpose" in listed["last_error"]
        assert await stub.cancel("rep") is True

    async def test_the_alarm_and_schedules_share_the_one_alarm(self, schedules):
        stub = schedules.stub("side-by-side")
        now = time.time()
        await stub.push("record", "task")
        await stub.arm(now + 1.5)
        await stub.plan_at(now + 3.0, "record", "schedule")
        rows = await wait_for(lambda: runs_of(stub, None, 3), 10 + 2 * schedules.slack)
        assert [row["tag"] for row in rows] == ["task", "alarm", "schedule"]
        assert rows[1]["at"] >= now + 1.5 and rows[2]["at"] >= now + 3.0

    async def test_many_schedules_on_one_object_each_run_once(self, schedules):
        stub = schedules.stub("many")
        await stub.plan_many(300, 1.0, spread=1.0)
        rows = await wait_for(lambda: runs_of(stub, None, 300), 30 + 2 * schedules.slack)
        assert sorted(row["tag"] for row in rows) == sorted(f"many-{n}" for n in range(300))
        assert all(row["at"] >= row["scheduled"] for row in rows)
        await asyncio.sleep(0.5 + schedules.slack)
        assert len(await stub.runs()) == 300 and await stub.schedules() == []

    async def test_a_queue_of_a_thousand_tasks_runs_in_order(self, schedules):
        stub = schedules.stub("queue")
        seqs = await stub.push_many(1000)
        assert seqs == sorted(seqs) and len(set(seqs)) == 1000
        rows = await wait_for(lambda: runs_of(stub, None, 1000), 60 + schedules.slack)
        assert [row["tag"] for row in rows] == [f"task-{n}" for n in range(1000)]
        assert [int(row["schedule_id"]) for row in rows] == seqs
        assert {row["kind"] for row in rows} == {"queue"}
        assert await stub.queue() == []

    async def test_tasks_from_many_events_run_in_the_order_they_were_enqueued(self, schedules):
        stub = schedules.stub("queue-events")
        for n in range(20):
            await stub.push("record", f"e-{n}")
        rows = await wait_for(lambda: runs_of(stub, None, 20), 20 + schedules.slack)
        assert [row["tag"] for row in rows] == [f"e-{n}" for n in range(20)]

    async def test_a_failing_task_holds_the_tasks_behind_it(self, schedules):
        stub = schedules.stub("queue-fifo")
        await stub.configure(fail_times=1)
        await stub.push("flaky", "first")
        await stub.push("record", "second")
        rows = await wait_for(lambda: runs_of(stub, None, 2), 20 + 2 * schedules.slack)
        assert [(row["tag"], row["retry_count"]) for row in rows] == [
            ("first", 1),
            ("second", 0),
        ]
