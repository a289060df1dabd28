"""The host: every live object of this process, on one event loop.

In embedded mode the host binds to the running loop of the main thread (daphne, pytest,
``asyncio.run``) or, for sync callers with no such loop (management commands, scripts),
to a loop on a background thread of its own. Calls from other loops and threads are
forwarded to the host's loop.
"""

import asyncio
import atexit
import contextlib
import contextvars
import inspect
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from django.utils.module_loading import import_string

from durable_objects.conf import alarm_backend_path, get_config
from durable_objects.exceptions import CallTimeout
from durable_objects.sockets.outbox import Outbox

from .activation import Activation, wait_idle
from .catalog import CatalogWriter
from .events import current_event
from .lock import lock_storage_root


class Env:
    """The ``env`` an object receives: settings and the namespaces of every class."""

    def __init__(self):
        from django.conf import settings

        self.settings = settings

    def namespace(self, label):
        """Return ``<Class>.objects`` for a label such as ``"chat.ChatRoom"``."""
        from durable_objects.registry import registry

        return registry.get(label).objects

    def __getattr__(self, name):
        from durable_objects.registry import registry

        for cls in registry.all():
            if cls.__name__ == name:
                return cls.objects
        raise AttributeError(f"No DurableObject class named {name!r} is installed.")


class Host:
    """Runs the objects of this process; one per process at a time."""

    def __init__(self, loop, *, thread=None):
        config = get_config()
        self.loop = loop
        self.thread = thread
        self.root = config["STORAGE_ROOT"]
        self.cluster = None  # placement/cluster.py's Cluster; None in the embedded mode
        if config["PLACEMENT"] == "redis":
            from durable_objects.placement.cluster import Cluster

            self.cluster = Cluster(self, config, can_host=thread is None)
        else:
            lock_storage_root(self.root)
        self.env = Env()
        self.activations = OrderedDict()
        self.open_shards = OrderedDict()
        self.commit_executor = ThreadPoolExecutor(
            config["COMMIT_THREADS"], thread_name_prefix="durable-objects-commit"
        )
        self.catalog = CatalogWriter(self)
        self.outbox = Outbox(loop)
        self._sync_methods = {}
        self.busy = 0  # activations whose runner task is at work
        self.constructions = 0  # instances constructed (activations and wakes)
        self.commits = 0  # durable commits (each one fsync)
        self.closed = False
        self.tick_interval = 1.0
        self._tick_handle = None
        self.alarms = import_string(alarm_backend_path(config))(self)
        if thread is None:  # a server process: re-arm the alarms pending under the root
            loop.call_soon_threadsafe(self.alarms.start)

    # -- the cluster (placement/cluster.py) -------------------------------------------

    def holds(self, hex_id):
        """True if this host may answer for the object (always, outside a cluster)."""
        return self.cluster is None or self.cluster.placement.lease_valid(hex_id)

    def route_call(self, cls, object_id, event, hops=0):
        """Queue event here, or send it to the object's holder; return its outcome's future."""
        if self.cluster is None:
            return self.dispatch(cls, object_id, event)
        return self.cluster.route(cls, object_id, event, hops)

    @property
    def usable(self):
        return not self.closed and self.loop.is_running() and not self.loop.is_closed()

    # -- events --------------------------------------------------------------------------

    def dispatch(self, cls, object_id, event):
        """Deliver event to the object's activation (created if needed); return its future."""
        return self.submit(self._activation(cls, object_id), event)

    def submit(self, activation, event):
        event.future = self.loop.create_future()
        if event.timed:
            self.track(event)
        activation.submit(event)
        return event.future

    def track(self, event):
        """Fail the event's future with CallTimeout if no outcome arrives in time."""
        event.timer = self.loop.call_later(get_config()["CALL_TIMEOUT"], self._expire, event)

    def sync_methods(self, cls):
        """Names of cls's public methods that are plain functions (may run inline)."""
        names = self._sync_methods.get(cls)
        if names is None:
            names = frozenset(
                name
                for name in cls.objects.methods
                if not inspect.iscoroutinefunction(getattr(cls, name))
            )
            self._sync_methods[cls] = names
        return names

    def resubmit(self, cls, object_id, event):
        """Give a reset instance's queued event to a new activation, or, in a cluster where
        this host no longer holds the object, to its holder (the caller's future follows)."""
        if self.cluster is None or self.holds(str(object_id)):
            self._activation(cls, object_id).submit(event)
            return
        waiting = event.future
        routed = self.cluster.route(cls, object_id, event)

        def follow(done):
            if waiting.done():
                return
            if done.cancelled():
                waiting.cancel()
            elif done.exception() is not None:
                waiting.set_exception(done.exception())
            else:
                waiting.set_result(done.result())

        routed.add_done_callback(follow)

    def deliver(self, event, outcome):
        if event.timer is not None:
            event.timer.cancel()
        if not event.future.done():
            event.future.set_result(outcome)

    def _expire(self, event):
        if not event.future.done():
            event.future.set_exception(
                CallTimeout(
                    f"No reply within CALL_TIMEOUT ({get_config()['CALL_TIMEOUT']} s); the call "
                    "may still run. Retry if the method is idempotent."
                )
            )

    def _activation(self, cls, object_id):
        key = object_id.key
        activation = self.activations.get(key)
        if activation is not None:
            self.activations.move_to_end(key)
            if key in self.open_shards:
                self.open_shards.move_to_end(key)
            return activation
        self._bound_activations(get_config()["MAX_ACTIVE_OBJECTS"] - 1)
        activation = Activation(self, cls, object_id)
        self.activations[key] = activation
        self._schedule_tick(activation.hibernate_after)
        return activation

    def _hibernate(self, activation):
        self.catalog.touch(activation)
        activation.hibernate()
        if self.cluster is not None and not self.closed:
            self.cluster.hibernated(activation.hex)

    async def evict(self, keys=None):
        """Hibernate the activations of keys (all if None), each once it is idle."""
        targets = list(self.activations.values())
        if keys is not None:
            targets = [activation for activation in targets if activation.key in keys]
        for activation in targets:
            await wait_idle(activation)
            if self.activations.get(activation.key) is activation:  # not replaced meanwhile
                self._hibernate(activation)

    def forget(self, activation):
        if self.activations.get(activation.key) is activation:
            del self.activations[activation.key]

    # -- open shards -------------------------------------------------------------------
    # open_shards holds the open shards of live objects and the parked shards of objects
    # that hibernated: waking one of those reuses its connection, so it neither reopens
    # the file nor recreates the WAL that closing the last connection deletes.

    def shard_opened(self, activation, created):
        self.open_shards[activation.key] = activation.shard
        self.open_shards.move_to_end(activation.key)
        self.catalog.touch(activation, created=created)
        self._bound_shards(get_config()["MAX_OPEN_SHARDS"])

    def take_parked_shard(self, key):
        """Return the open shard a hibernated activation of key left, if it is still open."""
        shard = self.open_shards.get(key)
        if shard is not None and shard.is_open:
            self.open_shards.move_to_end(key)
            return shard
        return None

    def release_shard(self, key, shard=None):
        """Close key's shard (on a commit thread) and stop counting it as open."""
        shard = self.open_shards.pop(key, None) or shard
        if shard is not None:
            shard.close(self.close_later)

    def _bound_shards(self, limit):
        """Close the least recently used parked or idle shards beyond limit."""
        if len(self.open_shards) <= limit:
            return
        for key in list(self.open_shards):
            if len(self.open_shards) <= limit:
                break
            owner = self.activations.get(key)
            if owner is None or owner.idle:
                self.release_shard(key)

    def _bound_activations(self, limit):
        """Hibernate the least recently used idle activations beyond limit."""
        if len(self.activations) <= limit:
            return
        for activation in list(self.activations.values()):
            if len(self.activations) <= limit:
                break
            if activation.idle:
                self._hibernate(activation)

    def close_later(self, close):
        """Run a shard's close (and its WAL checkpoint) on a commit thread."""
        try:
            self.commit_executor.submit(close)
        except RuntimeError:  # the executor is shut down: close here
            close()

    async def run_commit(self, commit, epoch):
        """Run a commit (its fsync) on a commit thread, so the loop keeps serving others."""
        await self.loop.run_in_executor(self.commit_executor, commit, epoch)

    # -- housekeeping --------------------------------------------------------------------

    def _schedule_tick(self, hibernate_after):
        interval = min(1.0, max(0.02, hibernate_after / 4))
        if self._tick_handle is None or interval < self.tick_interval:
            self.tick_interval = min(self.tick_interval, interval)
            if self._tick_handle is not None:
                self._tick_handle.cancel()
            self._tick_handle = self.loop.call_later(self.tick_interval, self._tick)

    def _tick(self):
        """Hibernate idle objects and write the catalog; runs every tick_interval seconds."""
        self._tick_handle = None
        if self.closed:
            return
        now = time.monotonic()
        for activation in list(self.activations.values()):
            if activation.idle and now - activation.last_active >= activation.hibernate_after:
                self._hibernate(activation)
        self.catalog.maybe_flush(now)
        if self.activations or self.catalog.pending:
            self._tick_handle = self.loop.call_later(self.tick_interval, self._tick)

    def stop_objects(self):
        """Drop every instance; run on the host's loop or after it stopped."""
        self.closed = True
        self.outbox.close()
        self.alarms.close()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        for activation in list(self.activations.values()):
            self._hibernate(activation)
        for key in list(self.open_shards):
            self.release_shard(key)

    def shutdown(self):
        """Drop every instance and write the catalog; run on the host's loop or after it."""
        if not self.closed:
            self.stop_objects()
        if self.cluster is not None:
            self.cluster.placement.leave_sync()  # daphne exits without awaiting anything
        self.catalog.flush_sync()
        self.commit_executor.shutdown(wait=False)
        self.catalog.executor.shutdown(wait=False)


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


def _is_server_thread(thread):
    """True for the threads whose loops outlive one call: the main thread, and the thread
    Django's autoreloader runs the server in (``runserver`` without ``--noreload``)."""
    return thread is threading.main_thread() or thread.name == "django-main-thread"


def current_host():
    """Return the host if one exists, without creating it."""
    return _host


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
        loop.close()


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


async def _await(fn, *args):
    return await fn(*args)


async def call(cls, object_id, event):
    """Deliver event to the object wherever its host runs; return the decoded result."""
    event.context = contextvars.copy_context()
    outer = current_event.get()
    if outer is not None:
        activation, running = outer
        event.chain = running.call_chain()
        await activation.before_outgoing_call(running)
    host = get_host()
    if host.loop is asyncio.get_running_loop() and host.holds(str(object_id)):
        activation = host._activation(cls, object_id)
        outcome = None
        if activation.can_run_inline(event):
            outcome = await activation.run_inline(event)
            if outcome is None:
                host.track(event)
                outcome = await event.future
        else:
            outcome = await host.submit(activation, event)
        ok, value = outcome
    else:
        ok, value = await _route_from_anywhere(host, cls, object_id, event)
    if ok:
        return event.decode(value)
    if isinstance(value, BaseException):
        raise value
    from .errors import decode_exception

    raise decode_exception(value)


def submit_event(cls, object_id, event):
    """Queue event for the object now, so events queue in the order of these calls.

    Returns an awaitable of the outcome, ``(ok, value)``. The WebSocket consumer uses it
    to hand on a socket's messages without waiting for each one's outcome.
    """
    return _route_from_anywhere(get_host(), cls, object_id, event)


def _route_from_anywhere(host, cls, object_id, event):
    """``host.route_call`` on the host's loop, from it or from another; an awaitable."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if host.loop is running:
        return host.route_call(cls, object_id, event)
    future = asyncio.run_coroutine_threadsafe(
        _await(host.route_call, cls, object_id, event), host.loop
    )
    return asyncio.wrap_future(future)
