"""The process's one host: made on first use, bound to a loop, shut down at the end.

The host binds to the running loop of the main thread (daphne, pytest, ``asyncio.run``)
or of the thread Django's autoreloader serves in; for sync callers with no such loop
(management commands, scripts) it runs a loop on a background thread of its own. A
forked child forgets its parent's host, and a change of the ``DURABLE_OBJECTS`` or
``BASE_DIR`` setting (tests) shuts the host down; the next call makes a new one.
"""

import asyncio
import atexit
import contextlib
import os
import threading

from django.core.signals import setting_changed
from django.dispatch import receiver

from .host import Host

_host = None
_host_guard = threading.RLock()


def get_host():
    """Return this process's usable host, creating (or re-binding) it if needed."""
    global _host
    host = _host
    if host is not None and host.usable:
        return host
    with _host_guard:
        host = _host
        if host is not None and host.usable:
            return host
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and _is_server_thread(threading.current_thread()):
            new = Host(running)
        else:
            new = _start_background_host()
        _host = new
    if host is not None:
        host.shutdown()
    return new


def current_host():
    """Return the host if one exists, without creating it."""
    return _host


def reset_host():
    """Shut the host down (settings changed, tests); the next call makes a new one."""
    global _host
    with _host_guard:
        host, _host = _host, None
    if host is None:
        return
    if host.thread is not None and host.usable:
        future = asyncio.run_coroutine_threadsafe(_stop_objects(host), host.loop)
        future.result(timeout=10)
        host.loop.call_soon_threadsafe(host.loop.stop)
        host.thread.join(timeout=10)
    host.shutdown()


async def _stop_objects(host):
    host.stop_objects()


def _is_server_thread(thread):
    """True for the threads whose loops outlive one call: the main thread, and the thread
    Django's autoreloader runs the server in (``runserver`` without ``--noreload``)."""
    return thread is threading.main_thread() or thread.name == "django-main-thread"


def _start_background_host():
    loop = asyncio.new_event_loop()
    started = threading.Event()
    thread = threading.Thread(
        target=_run_loop, args=(loop, started), name="durable-objects-host", daemon=True
    )
    thread.start()
    started.wait()
    try:
        return Host(loop, thread=thread)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        raise


def _run_loop(loop, started):
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set)
    try:
        loop.run_forever()
    finally:
        try:
            _end_tasks(loop)
        finally:
            loop.close()


def _end_tasks(loop, timeout=5.0):
    """Cancel the tasks a stopped host leaves (heartbeat, receive loop) and let them end,
    as ``asyncio.run`` does: none is left pending on a closed loop, to fail when collected."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=timeout))
    loop.run_until_complete(loop.shutdown_asyncgens())


def _forget_host_in_child():
    # A forked child (an RQ work horse) has the parent's host object but not its threads:
    # it makes a host of its own when it first needs one.
    global _host, _host_guard
    _host = None
    _host_guard = threading.RLock()


os.register_at_fork(after_in_child=_forget_host_in_child)


@atexit.register
def _shutdown_at_exit():
    # Write the catalog and close the shards of a host whose loop outlives the caller
    # (the background thread of management commands and scripts).
    # The interpreter is going away: if this fails, only catalog rows are lost.
    with contextlib.suppress(Exception):
        reset_host()


@receiver(setting_changed)
def _reset_on_setting_changed(*, setting, **kwargs):
    # conf's receiver, connected before this one (this module imports conf), has already
    # cleared the cached settings, so the next host reads the new ones.
    if setting in ("DURABLE_OBJECTS", "BASE_DIR"):
        reset_host()
