"""Schedules and the queue on the embedded default: the contract on the local timer, the
API, the cron rules (on a fake clock), bad input and limits, and a restart."""

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import async_to_sync

from durable_objects.runtime.lifecycle import reset_host
from durable_objects.storage import schedules as rows
from durable_objects.storage.cron import next_run
from durable_objects.testing import run_in_durable_object
from tests.contracts.alarms import wait_for
from tests.contracts.schedules import ScheduleContract, runs_of
from tests.support.objects_schedules import Scheduled

RETRY_BASE = 0.2
MAX_RETRIES = 3


class LocalDriver:
    slack = 0.0
    retry_base = RETRY_BASE
    max_retries = MAX_RETRIES

    def stub(self, name):
        return Scheduled.objects.get_by_name(name)


@pytest.fixture
def schedules(settings):
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "ALARM_RETRY_BASE": RETRY_BASE,
        "ALARM_MAX_RETRIES": MAX_RETRIES,
    }
    return LocalDriver()


class LocalScheduleContractTests(ScheduleContract):
    """The schedule contract on the local timer of the embedded default."""


# -- the API ------------------------------------------------------------------------------


async def test_get_schedules_lists_every_kind_the_next_due_first():
    stub = Scheduled.objects.get_by_name("listed")
    soon = await stub.plan(600, "record", "delay", 1)
    dated = await stub.plan_at(time.time() + 7200, "record", "date", id="dated")
    cron = await stub.plan("0 9 * * 1", "record", "cron", id="weekly", tz="Europe/Paris")
    every = await stub.plan_every(3600, "record", "every", id="hourly")
    listed = await stub.schedules()
    assert [s["id"] for s in listed] == [soon, every, dated, cron]
    by_id = {s["id"]: s for s in listed}
    assert by_id[soon]["kind"] == "delayed" and by_id[soon]["args"] == ["delay", 1]
    assert by_id["dated"]["kind"] == "scheduled"
    assert by_id["weekly"]["tz"] == "Europe/Paris" and by_id["weekly"]["cron"] == "0 9 * * 1"
    paris = datetime.fromtimestamp(by_id["weekly"]["time"], ZoneInfo("Europe/Paris"))
    assert (paris.weekday(), paris.hour, paris.minute) == (0, 9, 0)
    assert by_id["hourly"]["interval"] == 3600.0
    assert await stub.schedule_of("dated") == by_id["dated"]
    assert await stub.schedule_of("missing") is None
    assert len(soon) == 16 and {dated, cron, every} == {"dated", "weekly", "hourly"}


async def test_a_time_in_the_past_runs_at_the_next_delivery():
    stub = Scheduled.objects.get_by_name("past")
    await stub.plan(-60, "record", "negative-delay")
    await stub.plan_at(0, "record", "1970")
    rows_ = await wait_for(lambda: runs_of(stub, None, 2), 10)
    assert sorted(row["tag"] for row in rows_) == ["1970", "negative-delay"]


async def test_a_coroutine_method_can_be_scheduled_and_queued():
    stub = Scheduled.objects.get_by_name("async-method")
    await stub.plan(0, "record_later", "scheduled")
    await stub.push("record_later", "queued")
    rows_ = await wait_for(lambda: runs_of(stub, None, 2), 10)
    assert sorted(row["tag"] for row in rows_) == ["queued", "scheduled"]


async def test_delete_all_drops_schedules_and_the_queue():
    stub = Scheduled.objects.get_by_name("wiped")
    await stub.plan(0.5, "record", "never")

    def fill_and_wipe(obj, ctx):
        ctx.enqueue("record", "never-task")
        ctx.storage.delete_all()
        return ctx.get_schedules(), ctx.get_queue()

    assert await run_in_durable_object(stub, fill_and_wipe) == ([], [])
    assert await stub.wake_time() is None


async def test_the_wake_time_is_the_earliest_of_alarm_schedules_and_queue():
    stub = Scheduled.objects.get_by_name("wake")
    now = time.time()
    await stub.arm(now + 300)
    assert await stub.wake_time() == now + 300
    await stub.plan_at(now + 100, "record", "x", id="x")
    assert await stub.wake_time() == pytest.approx(now + 100, abs=1e-6)
    await stub.cancel("x")
    assert await stub.wake_time() == now + 300


# -- cron on a fake clock -----------------------------------------------------------------

NOON = datetime(2026, 3, 28, 12, 0, 30, tzinfo=UTC).timestamp()  # a Saturday


def test_cron_first_run_is_the_next_match_in_its_time_zone():
    kind, due, cron, tz = rows.first_run("30 8 * * *", tz="Europe/Paris", now=NOON)
    assert (kind, cron, tz) == ("cron", "30 8 * * *", "Europe/Paris")
    # Sunday 29 March 2026 is the switch to summer time: 08:30 in Paris is 06:30 UTC.
    assert datetime.fromtimestamp(due, UTC) == datetime(2026, 3, 29, 6, 30, tzinfo=UTC)
    _, due, _, tz = rows.first_run("*/15 * * * *", tz="UTC", now=NOON)
    assert tz == "UTC" and datetime.fromtimestamp(due, UTC).minute == 15


def test_cron_uses_django_time_zone_by_default(settings):
    settings.TIME_ZONE = "America/New_York"
    _, due, _, tz = rows.first_run("0 9 * * *", now=NOON)
    assert tz == "America/New_York"
    assert datetime.fromtimestamp(due, UTC) == datetime(2026, 3, 28, 13, 0, tzinfo=UTC)


def test_missed_cron_runs_collapse_into_one():
    """The rule: after a run at now, the next is the first match after now, not the
    first match after the run's scheduled time; missed matches are not run one by one."""
    hourly = {"kind": "cron", "cron": "0 * * * *", "tz": "UTC", "scheduled_at": NOON - 30}
    five_hours_late = NOON + 5 * 3600
    following = rows.next_after_run(hourly, five_hours_late)
    assert following == next_run("0 * * * *", "UTC", five_hours_late)
    assert following - five_hours_late <= 3600  # the next match after now
    on_time = rows.next_after_run(hourly, NOON - 29)
    assert on_time == NOON - 30 + 3600  # no miss: the following match


def test_missed_interval_runs_collapse_and_keep_the_phase():
    row = {"kind": "interval", "interval": 10.0, "scheduled_at": 1000.0}
    assert rows.next_after_run(row, 1000.5) == 1010.0
    assert rows.next_after_run(row, 1095.0) == 1100.0  # nine missed: one run, then 1100
    assert rows.next_after_run(row, 1100.0) == 1110.0
    assert rows.next_after_run({"kind": "delayed"}, 5.0) is None


# -- bad input and limits -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "kwargs", "error", "match"),
    [
        ("61 * * * *", {}, ValueError, r"bad minute field \('61'\)"),
        ("* 24 * * *", {}, ValueError, r"bad hour field \('24'\)"),
        ("* * 32 * *", {}, ValueError, "bad day-of-month field"),
        ("* * * 13 *", {}, ValueError, r"bad month field \('13'\)"),
        ("* * * * 8", {}, ValueError, r"bad day-of-week field \('8'\)"),
        ("* * *", {}, ValueError, "has 3 fields; it needs five"),
        ("0 9 * * *", {"tz": "Mars/Olympus"}, ValueError, "Unknown time zone 'Mars/Olympus'"),
        (5, {"tz": "UTC"}, TypeError, "tz= is for cron expressions only"),
        (datetime(2030, 1, 1), {}, ValueError, "aware datetime"),
        (float("nan"), {}, ValueError, "finite"),
        (None, {}, TypeError, "not NoneType"),
        (True, {}, TypeError, "not bool"),
        (time.time() + 60, {}, ValueError, "not a UNIX time"),
        (1, {"id": ""}, ValueError, "1 to 200 characters"),
        (1, {"id": 7}, TypeError, "schedule id is a str"),
    ],
)
async def test_bad_schedules_are_refused_and_leave_the_schedules(when, kwargs, error, match):
    stub = Scheduled.objects.get_by_name("bad-input")
    await stub.plan(3600, "record", "kept", id="kept")

    def bad(obj, ctx):
        ctx.schedule(when, "record", "bad", **kwargs)

    with pytest.raises(error, match=match):
        await run_in_durable_object(stub, bad)
    assert [s["id"] for s in await stub.schedules()] == ["kept"]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda ctx: ctx.schedule(1, "missing"), ValueError, "no public method 'missing'"),
        (lambda ctx: ctx.schedule(1, "_private"), ValueError, "no public method '_private'"),
        (lambda ctx: ctx.schedule(1, "alarm"), ValueError, r"alarm\(\) is a handler"),
        (lambda ctx: ctx.enqueue("fetch"), ValueError, r"fetch\(\) is a handler"),
        (lambda ctx: ctx.enqueue(len), TypeError, "method's name as a str"),
        (
            lambda ctx: ctx.schedule(1, "record", object()),
            TypeError,
            "argument 'tag' of Scheduled.record",
        ),
        (
            lambda ctx: ctx.enqueue("record", "ok", {1, 2}),
            TypeError,
            "argument 'extra' of Scheduled.record",
        ),
        (lambda ctx: ctx.schedule_every(0, "record"), ValueError, "above 0 seconds"),
        (lambda ctx: ctx.schedule_every("1s", "record"), TypeError, "not str"),
    ],
)
async def test_bad_methods_and_arguments_are_refused(call, error, match):
    stub = Scheduled.objects.get_by_name("bad-method")
    with pytest.raises(error, match=match):
        await run_in_durable_object(stub, lambda obj, ctx: call(ctx))
    assert await stub.schedules() == [] and await stub.queue() == []


async def test_the_limits_are_settings_with_clear_errors(settings):
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "SCHEDULES_MAX_PER_OBJECT": 3,
        "QUEUE_MAX_LENGTH": 2,
        "SCHEDULE_MAX_ARGS_SIZE": 100,
    }
    stub = Scheduled.objects.get_by_name("limits")
    for n in range(3):
        await stub.plan(3600, "record", "x", id=f"s{n}")
    with pytest.raises(ValueError, match=r"has 3 schedules, the limit \(SCHEDULES_MAX_PER"):
        await stub.plan(3600, "record", "x", id="s3")
    assert await stub.plan(60, "record", "replaced", id="s1") == "s1"  # replacing is fine
    with pytest.raises(ValueError, match="the limit is 100 bytes \\(SCHEDULE_MAX_ARGS_SIZE\\)"):
        await stub.plan(60, "record", "y" * 200, id="s1")

    def fill_queue(obj, ctx):
        ctx.storage.put("blocker", 1)
        ctx.enqueue("record", "a")
        ctx.enqueue("record", "b")
        ctx.enqueue("record", "c")

    with pytest.raises(ValueError, match=r"holds 2 tasks, the limit \(QUEUE_MAX_LENGTH\)"):
        await run_in_durable_object(stub, fill_queue)
    assert await stub.queue() == []  # the event rolled back: nothing was enqueued
    assert len(await stub.schedules()) == 3


# -- a restart ----------------------------------------------------------------------------

SCRIPT = Path(__file__).resolve().parent / "support" / "schedule_process.py"


def test_a_restart_delivers_schedules_and_the_queue_and_collapses_missed_cron_runs(tmp_path):
    """A server process sets schedules and a queue and is killed; the next one delivers."""
    root = tmp_path / "root"

    def start(mode):
        return subprocess.Popen(
            [sys.executable, str(SCRIPT), str(root), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    setter = start("set")
    assert setter.stdout.readline().strip() == "set", setter.stderr.read()
    time.sleep(2.5)  # the cron schedule runs every second meanwhile
    setter.kill()  # SIGKILL: no clean shutdown, the catalog may be behind
    setter.wait()
    killed_at = time.time()
    time.sleep(3.0)  # three cron matches missed while nothing runs
    checker = start("check")
    out, err = checker.communicate(timeout=90)
    assert checker.returncode == 0, err
    report = dict(line.split(" ", 1) for line in out.splitlines())
    assert report["delayed"] == "1" and report["later"] == "pending"
    assert report["queue"] == " ".join(f"t{n}" for n in range(50))
    cron_times = [float(t) for t in report["cron"].split()]
    restarted_at = float(report["started"])
    missed = [t for t in cron_times if killed_at < t < restarted_at - 1]
    assert len(missed) <= 1  # the missed matches ran once, not once each
    assert any(t >= restarted_at for t in cron_times)  # and it goes on after the restart
    assert cron_times == sorted(set(cron_times))


async def test_timedeltas_are_delays_and_intervals():
    stub = Scheduled.objects.get_by_name("timedeltas")

    def plan(obj, ctx):
        before = time.time()
        ctx.schedule(timedelta(minutes=5), "record", "a", id="a")
        ctx.schedule_every(timedelta(seconds=90), "record", "b", id="b")
        return before, ctx.get_schedule("a"), ctx.get_schedule("b")

    before, a, b = await run_in_durable_object(stub, plan)
    assert a["kind"] == "delayed" and before + 300 <= a["time"] <= time.time() + 300
    assert b["kind"] == "interval" and b["interval"] == 90.0


async def test_a_run_sees_its_schedule_and_may_cancel_or_snooze_it():
    stub = Scheduled.objects.get_by_name("self-aware")

    def plan(obj, ctx):
        ctx.schedule_every(0.2, "cancel", "every", id="every")  # cancels itself at its run
        ctx.schedule(0.2, "snooze", 3600, id="snooze")  # sets its own id again

    await run_in_durable_object(stub, plan)

    async def both_ran():
        listed = {s["id"]: s for s in await stub.schedules()}
        return listed if "every" not in listed and listed["snooze"]["time"] > 3000 else None

    listed = await wait_for(both_ran, 10)
    assert listed["snooze"]["args"] == ["snoozed"] and listed["snooze"]["kind"] == "delayed"


async def test_a_run_that_raises_after_calling_another_object_is_still_retried(schedules):
    stub = Scheduled.objects.get_by_name("calls-then-fails")
    other = Scheduled.objects.get_by_name("called-by-a-run")
    await stub.configure(fail_times=1)
    await stub.plan(0, "call_then_flaky", "called-by-a-run", id="caller")
    [row] = await wait_for(lambda: runs_of(stub, "after-call"), 10)
    assert row["retry_count"] == 1  # the first attempt raised after its call committed
    assert len(await other.runs("called")) == 2  # the call ran at each attempt
    assert await stub.schedules() == []


def test_a_shard_from_before_schedules_gains_its_tables_when_opened(storage_root):
    """A version-3 shard (no _do_schedules, no _do_queue) is upgraded when it opens."""
    import sqlite3

    from durable_objects.storage.schema import SCHEMA_VERSION
    from durable_objects.storage.shard import shard_path

    stub = Scheduled.objects.get_by_name("old-shard")
    async_to_sync(stub.configure)(kept=1)
    path = shard_path(storage_root, "tests.Scheduled", str(stub.id))
    reset_host()  # every connection closed, as after a restart
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE _do_schedules; DROP TABLE _do_queue; PRAGMA user_version = 3;")
    conn.close()
    schedule_id = async_to_sync(stub.plan)(3600, "record", "after-the-upgrade")
    assert [s["id"] for s in async_to_sync(stub.schedules)()] == [schedule_id]
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    finally:
        conn.close()
