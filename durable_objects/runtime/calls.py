"""The entry points of calls: from any coroutine, thread or loop to the host's loop."""

import asyncio
import contextvars
import threading

from durable_objects.events.base import current_event
from durable_objects.events.errors import decode_exception

from . import waits
from .lifecycle import get_host


async def call(cls, object_id, event):
    """Deliver event to the object wherever its host runs; return the decoded result."""
    event.context = contextvars.copy_context()
    outer = current_event.get()
    if outer is None:
        return await _call(cls, object_id, event)
    activation, running = outer
    if activation.worker_thread == threading.get_ident():
        raise RuntimeError(
            "A sync method running on a worker thread (Meta.run_sync_on_thread) cannot call "
            "other objects; make the method async to call them."
        )
    await activation.before_outgoing_call(running)
    # Computed after the commit above, just before the call is queued: who waits on it.
    event.chain = waits.outgoing_chain(activation, running)
    waiting = (running, str(object_id), event)
    activation.outgoing.append(waiting)
    try:
        return await _call(cls, object_id, event)
    finally:
        activation.outgoing.remove(waiting)


async def _call(cls, object_id, event):
    outcome, future = await run_or_submit(cls, object_id, event)
    ok, value = outcome if outcome is not None else await future
    if ok:
        return event.decode(value)
    if isinstance(value, BaseException):
        raise value
    raise decode_exception(value)


def submit_event(cls, object_id, event):
    """Queue event for the object now, so events queue in the order of these calls.

    Returns an awaitable of the outcome, ``(ok, value)``. The WebSocket consumer uses it
    to hand on a socket's messages without waiting for each one's outcome.
    """
    host = get_host()
    return on_host_loop(host, host.route, cls, object_id, event)


async def run_or_submit(cls, object_id, event):
    """Run event in the caller's task if its object is idle here; else queue it for it.

    Returns ``(outcome, None)`` when the event ran to its end (``run_inline``), or
    ``(None, future)`` of its outcome when it waits in the object's queue or for the
    commit it shares with the events queued behind it. An event that is queued keeps
    the order of these calls, as with ``submit_event``. ``call()`` and the WebSocket
    consumer use it: an event for an idle object costs no task and no trip through the
    loop.
    """
    host = get_host()
    if host.loop is _running_loop() and host.holds(str(object_id)):
        activation = host.activation(cls, object_id)
        if activation.can_run_inline(event):
            outcome = await activation.run_inline(event)
            if outcome is not None:
                return outcome, None
            if event.timed:
                host.track(event)
            return None, event.future
        return None, host.submit(activation, event)
    return None, submit_event(cls, object_id, event)


def on_host_loop(host, fn, *args):
    """Run ``fn(*args)``, which returns an awaitable, on the host's loop; an awaitable.

    On the host's loop fn runs at once, before anything is awaited (so events queue in
    call order); from another thread or loop it is handed to the host's loop.
    """
    if host.loop is _running_loop():
        return fn(*args)
    future = asyncio.run_coroutine_threadsafe(_await(fn, *args), host.loop)
    return asyncio.wrap_future(future)


def on_host_loop_sync(host, fn, *args, timeout):
    """Run ``fn(*args)`` on the host's loop from a thread that is not on it; its result."""
    future = asyncio.run_coroutine_threadsafe(_await(fn, *args), host.loop)
    return future.result(timeout)


async def _await(fn, *args):
    return await fn(*args)


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
