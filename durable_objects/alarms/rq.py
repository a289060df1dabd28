"""Alarms in a cluster: one RQ job per object, run by ``manage.py rqworker --with-scheduler``.

After a commit that changed an object's alarm, its host replaces the object's job: the
hash ``do:alarm-jobs`` maps the object's hex ID to its current job, so the old job is
deleted and a new one scheduled at the new time (or none, for a deleted alarm). Job IDs
are unique per scheduling, so a job that is running never shares an ID with its
successor. The job (``jobs.deliver``) wakes the object wherever it lives; the object runs
``alarm()`` only if its stored alarm is due, so stale and duplicate jobs are harmless.

The host that commits an alarm also arms a timer of its own for it (``timers``), and
the job is scheduled ALARM_FALLBACK_DELAY seconds after the alarm's time: the timer
delivers at the time, without a trip through RQ, and its commit replaces the job before
the job runs. The job delivers only what the host could not (the host died or restarted,
the delivery failed). With ALARM_FALLBACK_DELAY None the workers deliver every alarm.

Redis may lose the jobs (FLUSHALL, a restart without persistence) and a worker may die
mid-job. ``ensure_jobs`` re-creates the job of every pending alarm that has none live;
the hosts run it at start and every ALARM_SWEEP_INTERVAL (one host at a time, under a
lock), and ``manage.py sweep_alarms`` runs it on demand.

Jobs are JSON (``rq.serializers.JSONSerializer``), never pickles: RQ's default serializer
unpickles what it reads from Redis, so anyone who could write to the queue's Redis would
run code in the workers (and in django-rq's admin pages). The queue, every job this module
reads and the workers (``rqworker --serializer rq.serializers.JSONSerializer``) use it;
check E019 asks for it in ``RQ_QUEUES``.
"""

import asyncio
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import UTC, datetime

from durable_objects.conf import get_config

from .base import BaseAlarmBackend
from .jobs import EARLY_WAIT, RUNNING
from .timers import AlarmTimers

logger = logging.getLogger("durable_objects.alarms")

JOBS = "do:alarm-jobs"  # hash: hex id -> the id of the object's current job
SWEEP_LOCK = "do:alarm-sweep"
SCHEDULER_GRACE = 3.0  # seconds a scheduled job may wait past its time for the scheduler
LIVE_STATUSES = {b"queued", b"scheduled", b"deferred"}  # waiting to run
# Retries of a job that could not reach its object (no live host, a timeout); the sweep
# re-creates a job that ran out of them while the alarm is still pending.
DELIVERY_RETRY_INTERVALS = [1, 2, 4, 8, 16, 30, 60, 60, 60, 60]


SERIALIZER = "rq.serializers.JSONSerializer"  # for RQ_QUEUES and rqworker --serializer
# The worker, as ``manage.py`` arguments: RQ's scheduler in it, jobs read as JSON.
WORKER_COMMAND = ("rqworker", "--with-scheduler", "--serializer", SERIALIZER)


def get_queue():
    """The alarm queue (ALARM_QUEUE), with the JSON serializer whatever RQ_QUEUES says."""
    import django_rq
    from rq.serializers import JSONSerializer

    return django_rq.get_queue(get_config()["ALARM_QUEUE"], serializer=JSONSerializer)


def uses_json(serializer):
    """True if an RQ_QUEUES SERIALIZER (a path, an alias or a class) is RQ's JSON one."""
    from rq.serializers import JSONSerializer, resolve_serializer

    if not serializer:
        return False  # RQ's default: pickle
    try:
        resolved = resolve_serializer(serializer)
    except Exception:
        return False
    return isinstance(resolved, type) and issubclass(resolved, JSONSerializer)


# One round trip for the common case: the object's current job, if it still waits (to be
# deleted); with ARGV[3] "1" (no new alarm) the mapping goes too unless the job waits.
_TAKE_JOB = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
    local status = redis.call('HGET', ARGV[2] .. old, 'status')
    if status == 'queued' or status == 'scheduled' or status == 'deferred' then
        return old
    end
end
if ARGV[3] == '1' then
    redis.call('HDEL', KEYS[1], ARGV[1])
end
return false
"""


def schedule_job(queue, label, hex_id, due):
    """Delete the object's current job and schedule one for due (None: none). Blocking."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    connection = queue.connection
    take = getattr(connection, "_do_take_job", None)
    if take is None:  # EVALSHA, loaded again after a FLUSHALL
        take = connection._do_take_job = connection.register_script(_TAKE_JOB)
    # A running job finishes on its own (its object decides); a waiting one is deleted.
    old = take(keys=[JOBS], args=[hex_id, Job.redis_job_namespace_prefix, int(due is None)])
    if old is not None:
        with suppress(NoSuchJobError):
            Job.fetch(old.decode(), connection=connection, serializer=queue.serializer).delete()
    if due is None:
        if old is not None:
            connection.hdel(JOBS, hex_id)
        return None
    job = _enqueue(queue, label, hex_id, due)
    connection.hset(JOBS, hex_id, job.id)
    return job


def _enqueue(queue, label, hex_id, due):
    from rq import Retry

    from .jobs import deliver

    options = {
        "job_id": f"do-alarm-{hex_id}-{secrets.token_hex(4)}",
        "description": f"alarm of {label} {hex_id}",
        "result_ttl": 600,
        "failure_ttl": 7 * 24 * 3600,
        "job_timeout": int(get_config()["CALL_TIMEOUT"] + 60),
        "retry": Retry(max=len(DELIVERY_RETRY_INTERVALS), interval=DELIVERY_RETRY_INTERVALS),
    }
    if due <= time.time():
        return queue.enqueue(deliver, label, hex_id, due, **options)
    # RQ's scheduler works in whole seconds and may enqueue a job up to a second early;
    # the job then waits until due itself.
    return queue.enqueue_at(
        datetime.fromtimestamp(due, UTC), deliver, label, hex_id, due, **options
    )


def ensure_jobs(queue, alarms):
    """Schedule a job for each pending alarm whose job is missing, finished or dead.

    A job still in the scheduled registry SCHEDULER_GRACE seconds after its time there
    (the alarm's, or an RQ retry's) is enqueued at once: its scheduler is gone (a worker
    killed with SIGKILL leaves its scheduler holding RQ's lock; after a FLUSHALL RQ's
    scheduler stops until it takes the lock again, minutes later).
    alarms maps (label, hex) to due UNIX seconds. Returns how many jobs were created.
    """
    from rq.job import Job

    late = time.time() - SCHEDULER_GRACE
    keys = list(alarms)
    connection = queue.connection
    intermediate = queue.intermediate_queue_key
    scheduled = queue.scheduled_job_registry.key
    created = 0
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        with connection.pipeline(transaction=False) as pipe:
            for _, hex_id in chunk:
                pipe.hget(JOBS, hex_id)
            job_ids = pipe.execute()
        with connection.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                name = (job_id or b"-").decode()
                pipe.hget(Job.key_for(name), "status")
                pipe.exists(RUNNING + name)
                pipe.lpos(intermediate, name)
                pipe.zscore(scheduled, name)
            states = pipe.execute()
        for index, (label, hex_id) in enumerate(chunk):
            status, running, dequeued, scheduled_at = states[4 * index : 4 * index + 4]
            due = alarms[(label, hex_id)]
            # Lost: no job, a finished or failed one, one started by a worker that died,
            # one left in (or missing from) the scheduled registry past its time there,
            # or one taken off the queue by a dead worker's connection (still in RQ's
            # intermediate list).
            lost = (
                job_ids[index] is None
                or status not in (*LIVE_STATUSES, b"started")
                or (status == b"started" and not running)
                or (status == b"scheduled" and (scheduled_at is None or scheduled_at < late))
                or (status == b"queued" and dequeued is not None and due < late)
            )
            if not lost:
                continue
            schedule_job(queue, label, hex_id, due)
            created += 1
    return created


class RQAlarms(BaseAlarmBackend):
    """A cluster host's alarm backend: a timer per alarm it committed, an RQ job behind
    each (scheduled off the loop), and periodic sweeps."""

    requires_cluster = True  # jobs run in rqworker, a client of the cluster
    supports_sweep = True  # ensure_jobs() needs only Redis and the catalog

    def __init__(self, host):
        super().__init__(host)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="durable-objects-alarms")
        self.task = None
        self._queue = None
        self.fallback_delay = get_config()["ALARM_FALLBACK_DELAY"]
        # The job is behind each timer: a timer that fails leaves the alarm to it.
        self.timers = AlarmTimers(host, retry=False, early_within=EARLY_WAIT)

    @property
    def queue(self):
        """The alarm queue, made once: each ``get_queue()`` opens a new Redis connection
        (a connect and a handshake per job scheduled). Used on the backend's one thread."""
        if self._queue is None:
            self._queue = get_queue()
        return self._queue

    def schedule(self, label, hex_id, due):
        """Arm this host's timer and replace the object's job (on this backend's thread,
        in order), the job ALARM_FALLBACK_DELAY after the timer."""
        if self.closed:
            return
        job_due = due
        if self.fallback_delay is not None:
            self.timers.set(label, hex_id, due)
            if due is not None:
                job_due = due + self.fallback_delay
        self.executor.submit(self._schedule, label, hex_id, job_due)

    def _schedule(self, label, hex_id, due):
        try:
            schedule_job(self.queue, label, hex_id, due)
        except Exception:
            logger.warning(
                "Scheduling the alarm job of %s %s failed; the sweep will re-create it.",
                label,
                hex_id,
                exc_info=True,
            )

    def start(self):
        """Sweep at start and every ALARM_SWEEP_INTERVAL, if this process hosts objects."""
        placement = self.host.placement
        if placement.distributed and placement.can_host:
            self.task = self.host.loop.create_task(self._sweeper(placement))

    async def _sweeper(self, placement):
        await placement.ready()
        interval = get_config()["ALARM_SWEEP_INTERVAL"]
        scan = "changed"  # at start, the shards a killed process wrote after its last flush
        while not self.closed:
            await self.host.loop.run_in_executor(self.executor, self.sweep_once, interval, scan)
            # Then the catalog alone: this host keeps it current, and reading shards that
            # hosts have open would compete for their locks.
            scan = "none"
            await asyncio.sleep(interval)

    def sweep_once(self, interval, scan="none"):
        """Sweep unless another process swept within the interval (a lock in Redis)."""
        from django.db import connection

        from .sweep import pending_alarms

        try:
            queue = self.queue
            ttl = max(1, int(interval * 900))  # ms: a little under the interval
            if queue.connection.set(SWEEP_LOCK, self.host.placement.token, nx=True, px=ttl):
                alarms = pending_alarms(scan=scan)
                created = ensure_jobs(queue, alarms)
                if created:
                    logger.warning(
                        "The alarm sweep re-created %d of %d pending alarm jobs.",
                        created,
                        len(alarms),
                    )
        except Exception as exc:
            logger.info("The alarm sweep failed (%s); it runs again later.", exc)
        finally:
            connection.close()

    def data_lost(self):
        """Redis lost its data: re-create the alarm jobs now, not at the next sweep."""
        if not self.closed and self.host.placement.can_host:
            self.executor.submit(self.sweep_once, get_config()["ALARM_SWEEP_INTERVAL"])

    def close(self):
        """Stop the sweeps; jobs already scheduled stay in Redis for the workers."""
        self.closed = True
        self.timers.close()
        if self.task is not None:
            self.task.cancel()
        with suppress(RuntimeError):  # closed before
            self.executor.submit(self._disconnect)  # after the jobs already asked for
        self.executor.shutdown(wait=False)

    def _disconnect(self):
        if self._queue is not None:
            self._queue.connection.connection_pool.disconnect()

    @classmethod
    def sweep(cls, alarms):
        """Re-create the job of each pending alarm whose job is lost; return how many."""
        return ensure_jobs(get_queue(), alarms)

    @classmethod
    def check(cls, **kwargs):
        """Yield the base class's messages, whether RQ_QUEUES has ALARM_QUEUE, and JSON."""
        from django.conf import settings
        from django.core.checks import Error

        yield from super().check(**kwargs)
        queue = get_config()["ALARM_QUEUE"]
        queues = getattr(settings, "RQ_QUEUES", None) or {}
        if queue not in queues:
            yield Error(
                f"The alarm backend {cls.__module__}.{cls.__qualname__} needs "
                f"RQ_QUEUES[{queue!r}], the django-rq queue of its jobs (ALARM_QUEUE).",
                hint=f"Add 'django_rq' to INSTALLED_APPS and RQ_QUEUES = {{{queue!r}: "
                "{'URL': <your Redis URL>}}, or set DURABLE_OBJECTS['ALARM_QUEUE'] to a key "
                "of RQ_QUEUES.",
                id="durable_objects.E018",
            )
        if queue in queues and not uses_json(queues[queue].get("SERIALIZER")):
            yield Error(
                f"RQ_QUEUES[{queue!r}], the queue of the alarm jobs, does not use RQ's JSON "
                "serializer: pickled jobs read from Redis run code in whatever reads them.",
                hint=f"Add 'SERIALIZER': {SERIALIZER!r} to RQ_QUEUES[{queue!r}] and run the "
                f"workers with 'manage.py rqworker --with-scheduler --serializer {SERIALIZER}'.",
                id="durable_objects.E019",
            )
