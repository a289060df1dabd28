"""Alarms on the embedded default: the contract with the local timer, the API, bad input."""

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync

from durable_objects.alarms.base import BaseAlarmBackend
from durable_objects.alarms.local import LocalAlarms
from durable_objects.alarms.rq import RQAlarms
from durable_objects.testing import evict, run_durable_object_alarm, run_in_durable_object
from tests.contracts.alarms import AlarmContract, fired_rows, wait_for
from tests.support.objects_alarms import Alarmed, NoHandler

RETRY_BASE = 0.2
MAX_RETRIES = 3


class LocalDriver:
    slack = 0.0
    retry_base = RETRY_BASE
    max_retries = MAX_RETRIES

    def stub(self, name):
        return Alarmed.objects.get_by_name(name)


@pytest.fixture
def alarms(settings):
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "ALARM_RETRY_BASE": RETRY_BASE,
        "ALARM_MAX_RETRIES": MAX_RETRIES,
    }
    return LocalDriver()


class LocalAlarmContractTests(AlarmContract):
    """The alarm contract on the local timer of the embedded default."""


# -- the API ------------------------------------------------------------------------------


async def test_set_alarm_takes_a_datetime_and_get_alarm_returns_unix_seconds():
    stub = Alarmed.objects.get_by_name("datetime")
    when = datetime.now(UTC) + timedelta(hours=1)
    await run_in_durable_object(stub, lambda obj, ctx: ctx.storage.set_alarm(when))
    assert await stub.alarm_time() == pytest.approx(when.timestamp())
    assert await Alarmed.objects.get_by_name("never-set").alarm_time() is None


async def test_an_event_that_rolls_back_leaves_the_old_alarm():
    stub = Alarmed.objects.get_by_name("rolled-back")
    first = time.time() + 3600
    await stub.arm(first)
    with pytest.raises(RuntimeError, match="rolled back"):
        await stub.arm_and_fail(time.time() + 0.1)
    assert await stub.alarm_time() == first
    await asyncio.sleep(0.4)
    assert await stub.fired() == []  # the rolled-back time never fired


async def test_delete_all_clears_the_alarm():
    stub = Alarmed.objects.get_by_name("wiped")
    await stub.arm(time.time() + 0.3)
    await stub.wipe()  # drops the fired table too
    assert await stub.alarm_time() is None
    await asyncio.sleep(0.6)
    assert (await stub.status())["last_fired_at"] is None


async def test_alarms_wake_a_hibernated_object():
    stub = Alarmed.objects.get_by_name("asleep")
    await stub.arm(time.time() + 0.3)
    await evict(stub)
    [row] = await wait_for(lambda: fired_rows(stub), 10)
    assert row["retry_count"] == 0


def test_alarms_set_from_sync_code_fire():
    stub = Alarmed.objects.get_by_name("from-sync")
    async_to_sync(stub.arm)(time.time() + 0.2)
    deadline = time.monotonic() + 10
    while not async_to_sync(stub.fired)():
        assert time.monotonic() < deadline
        time.sleep(0.05)


async def test_run_durable_object_alarm_runs_a_set_alarm_now():
    stub = Alarmed.objects.get_by_name("run-now")
    assert await run_durable_object_alarm(stub) is False  # none set
    await stub.arm(time.time() + 3600)
    assert await run_durable_object_alarm(stub) is True
    [row] = await stub.fired()
    assert row["alarm_inside"] is None
    assert await stub.alarm_time() is None
    assert await run_durable_object_alarm(stub) is False  # consumed


async def test_run_durable_object_alarm_raises_the_handlers_error_and_records_it(alarms):
    stub = Alarmed.objects.get_by_name("run-now-fails")
    await stub.configure(fail_times=1)
    due = time.time() + 3600
    await stub.arm(due)
    with pytest.raises(RuntimeError, match="failing on purpose") as caught:
        await run_durable_object_alarm(stub)
    assert caught.value.remote is True
    status = await wait_for(stub.status, 5)
    assert status["retry_count"] == 1 and status["scheduled_at"] == due
    # The retry comes after the backoff, not at the original time.
    [row] = await wait_for(lambda: fired_rows(stub), 10)
    assert row["retry_count"] == 1


# -- backends -----------------------------------------------------------------------------


async def test_a_burst_of_alarms_is_delivered_a_few_at_a_time(settings, monkeypatch, tmp_path):
    from durable_objects.alarms import timers
    from durable_objects.runtime.lifecycle import get_host

    monkeypatch.setattr(timers, "MAX_CONCURRENT_DELIVERIES", 3)
    stubs = [Alarmed.objects.get_by_name(f"burst-{n}") for n in range(8)]
    attempts = tmp_path / "attempts.txt"  # watched without calling the objects
    for stub in stubs:
        await stub.configure(slow=0.2, attempts_file=str(attempts))
    host = get_host()
    in_flight, most = 0, 0
    real_route = host.route

    async def route_and_count(*args):
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            return await real_route(*args)
        finally:
            in_flight -= 1

    monkeypatch.setattr(host, "route", route_and_count)
    due = time.time() + 2.0  # every timer is armed well before
    for stub in stubs:
        await stub.arm(due)

    async def all_started():
        return attempts.exists() and len(attempts.read_text().splitlines()) == len(stubs)

    await wait_for(all_started, 20)
    while in_flight:
        await asyncio.sleep(0.05)
    for stub in stubs:
        [row] = await fired_rows(stub)
        assert row["retry_count"] == 0
    assert most == 3  # eight due together, never more than three under way


async def test_events_queued_in_one_turn_of_the_loop_reopen_their_shards_off_it(
    settings, monkeypatch
):
    from durable_objects.alarms.events import AlarmDelivery
    from durable_objects.runtime.lifecycle import get_host
    from tests.support.threads import record_threads

    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "MAX_OPEN_SHARDS": 1}
    stubs = [Alarmed.objects.get_by_name(f"one-turn-{n}") for n in range(4)]
    for stub in stubs:
        await stub.configure(slow=0)  # a shard on disk; each closes the one before
    await Alarmed.objects.get_by_name("one-turn-last").configure(slow=0)
    opened_on = record_threads(monkeypatch, "open")
    host = get_host()
    # Queued without an await between them: when the first runner starts, the others
    # have not yet, and it must count them as at work (host.starting).
    futures = [host.dispatch(Alarmed, stub.id, AlarmDelivery()) for stub in stubs]
    outcomes = await asyncio.gather(*futures)
    assert all(ok for ok, _ in outcomes)
    assert len(opened_on) == len(stubs)
    assert all(name.startswith("durable-objects-commit") for name in opened_on), opened_on


class SubclassedLocalAlarms(LocalAlarms):
    """A trivial subclass: it works wherever LocalAlarms does."""


class SubclassedRQAlarms(RQAlarms):
    """A trivial subclass: it works wherever RQAlarms does."""


def test_the_backends_subclass_the_base_class():
    assert issubclass(LocalAlarms, BaseAlarmBackend) and issubclass(RQAlarms, BaseAlarmBackend)
    assert (LocalAlarms.requires_cluster, LocalAlarms.supports_sweep) == (False, False)
    assert (RQAlarms.requires_cluster, RQAlarms.supports_sweep) == (True, True)


def test_the_base_class_names_what_a_subclass_must_implement():
    backend = BaseAlarmBackend(host=None)
    for method, args in (
        ("start", ()),
        ("schedule", ("tests.Alarmed", "0" * 64, None)),
        ("close", ()),
    ):
        with pytest.raises(NotImplementedError, match=rf"must provide a {method}\(\) method"):
            getattr(backend, method)(*args)
    with pytest.raises(NotImplementedError, match="BaseAlarmBackend does not support sweeps"):
        BaseAlarmBackend.sweep({})
    assert backend.data_lost() is None  # a no-op unless the backend keeps jobs in Redis


async def test_a_subclass_of_the_local_backend_delivers_alarms(settings):
    from durable_objects.runtime.lifecycle import get_host

    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "ALARM_BACKEND": "tests.test_alarms.SubclassedLocalAlarms",
    }
    stub = Alarmed.objects.get_by_name("subclassed-backend")
    await stub.arm(time.time() + 0.2)
    [row] = await wait_for(lambda: fired_rows(stub), 10)
    assert row["retry_count"] == 0
    assert type(get_host().alarms) is SubclassedLocalAlarms


@pytest.mark.django_db(transaction=True)
def test_sweep_alarms_with_a_subclass_of_the_local_backend_counts_them(settings):
    from django.core.management import call_command

    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "ALARM_BACKEND": "tests.test_alarms.SubclassedLocalAlarms",
    }
    async_to_sync(Alarmed.objects.get_by_name("swept-local").arm)(time.time() + 3600)
    out = StringIO()
    call_command("sweep_alarms", stdout=out)
    assert out.getvalue() == (
        "1 pending alarms; SubclassedLocalAlarms re-arms them when the server starts.\n"
    )


@pytest.mark.django_db(transaction=True)
def test_sweep_alarms_with_a_subclass_of_the_rq_backend_recreates_the_jobs(settings, redis_url):
    from django.core.management import call_command

    from durable_objects.alarms.rq import JOBS, get_queue, schedule_job

    stub = Alarmed.objects.get_by_name("swept-rq")
    async_to_sync(stub.arm)(time.time() + 3600)  # by the local backend: no job in Redis
    settings.RQ_QUEUES = {"default": {"URL": redis_url}}
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "ALARM_BACKEND": "tests.test_alarms.SubclassedRQAlarms",
    }
    queue = get_queue()
    queue.connection.hdel(JOBS, str(stub.id))
    try:
        out = StringIO()
        call_command("sweep_alarms", stdout=out)
        assert out.getvalue() == "1 pending alarms; 1 jobs re-created, the rest were live.\n"
        assert queue.connection.hget(JOBS, str(stub.id)) is not None
        out = StringIO()
        call_command("sweep_alarms", stdout=out)  # the job is scheduled: live
        assert out.getvalue() == "1 pending alarms; 0 jobs re-created, the rest were live.\n"
    finally:
        schedule_job(queue, "tests.Alarmed", str(stub.id), None)


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "error", "match"),
    [
        (datetime(2030, 1, 1), ValueError, "aware datetime"),
        (math.nan, ValueError, "finite"),
        (math.inf, ValueError, "finite"),
        (-math.inf, ValueError, "finite"),
        ("2030-01-01", TypeError, "not str"),
        (True, TypeError, "not bool"),
        (None, TypeError, "not NoneType"),
        (timedelta(seconds=5), TypeError, "not timedelta"),
        (time.time() * 1000, ValueError, "not milliseconds"),
    ],
)
async def test_bad_alarm_times_are_refused_and_leave_the_alarm(when, error, match):
    stub = Alarmed.objects.get_by_name("bad-input")
    kept = time.time() + 3600
    await stub.arm(kept)
    with pytest.raises(error, match=match):
        await run_in_durable_object(stub, lambda obj, ctx: ctx.storage.set_alarm(when))
    assert await stub.alarm_time() == kept


async def test_set_alarm_needs_an_alarm_handler():
    stub = NoHandler.objects.get_by_name("no-handler")
    with pytest.raises(TypeError, match="defines no alarm"):
        await stub.arm(time.time())


# -- durability ---------------------------------------------------------------------------

SCRIPT = Path(__file__).resolve().parent / "support" / "alarm_process.py"


def test_a_server_restart_rearms_pending_alarms(tmp_path):
    """A process sets alarms and is killed; the next server process delivers them."""
    root = tmp_path / "root"

    def start(mode):
        return subprocess.Popen(
            [sys.executable, str(SCRIPT), str(root), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    setter = start("set")
    assert setter.stdout.readline().strip() == "armed", setter.stderr.read()
    os.kill(setter.pid, signal.SIGKILL)  # no clean shutdown, the catalog never flushed
    setter.wait()
    checker = start("check")
    out, err = checker.communicate(timeout=60)
    assert checker.returncode == 0, err
    assert out.split() == ["fired", "3", "not-yet", "1"]
