"""The RQ job that delivers an alarm: ``deliver(label, hex_id, due)``.

It runs in ``manage.py rqworker --with-scheduler``, a process that does not host objects:
its call is routed to the object's holder (or any live host, which takes the object) like
any other call, and it waits for the outcome. While it waits it keeps a short-lived key
``do:alarm-run:<job id>`` alive, so a sweep can tell a job whose worker was killed from
one still delivering.
"""

import asyncio
import concurrent.futures
import time

from .events import AlarmDelivery

RUNNING = "do:alarm-run:"  # + job id: set by a job while it delivers (a short TTL, renewed)
RUNNING_TTL_MS = 5000

EARLY_WAIT = 5.0  # a job this early waits (RQ schedules in whole seconds)


def deliver(label, hex_id, due):
    """Wake the object and run its alarm if it is due; return what happened."""
    from rq import get_current_job

    from durable_objects.registry import registry

    job = get_current_job()
    _mark_running(job)  # at once: a sweep takes a started job without the mark for lost
    cls = registry.get(label)
    object_id = cls.objects.id_from_string(hex_id)
    _wait_until(due, job)
    result = _run(cls, object_id, job)
    due_at = result.get("due_at")
    if not result["ran"] and due_at is not None and 0 < due_at - time.time() <= EARLY_WAIT:
        _wait_until(due_at, job)  # due a moment from now (another clock): once more
        result = _run(cls, object_id, job)
    if result["ran"] and not result["ok"]:
        error = result["error"]
        return f"alarm() raised {error['type']}: {error['message']}; the object retries it"
    if result.get("runs"):
        return f"{result['runs']} scheduled runs or queued tasks under way"
    return "ran" if result["ran"] else f"not due (due_at={result.get('due_at')})"


def _wait_until(due, job):
    while (wait := due - time.time()) > 0:
        if wait > EARLY_WAIT:
            return
        _mark_running(job)
        time.sleep(min(wait, 1.0))


def _run(cls, object_id, job):
    from durable_objects.runtime.calls import call
    from durable_objects.runtime.lifecycle import get_host

    host = get_host()
    future = asyncio.run_coroutine_threadsafe(call(cls, object_id, AlarmDelivery()), host.loop)
    while True:  # the mark is fresh (RUNNING_TTL_MS): renew it once a second from now
        try:
            return future.result(timeout=1.0)
        except concurrent.futures.TimeoutError:
            _mark_running(job)


def _mark_running(job):
    if job is not None:
        job.connection.set(RUNNING + job.id, b"1", px=RUNNING_TTL_MS)
