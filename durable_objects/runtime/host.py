"""The host: every live object of this process, on one event loop.

Which loop, and when a host is made or shut down, is ``lifecycle``'s business; how a
call reaches the host from any thread is ``calls``'. The placement backend
(``PLACEMENT``) decides whether an event runs here or goes to another process.
"""

import inspect
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.utils.module_loading import import_string

from durable_objects.conf import alarm_backend_path, get_config, placement_path
from durable_objects.exceptions import CallTimeout, FencedError, ObjectReset
from durable_objects.sockets import presence
from durable_objects.sockets.outbox import Outbox

from .activation import Activation, wait_idle
from .catalog import CatalogWriter
from .env import Env
from .replica import Replicator


class Host:
    """Runs the objects of this process; one per process at a time."""

    def __init__(self, loop, *, thread=None):
        config = get_config()
        self.loop = loop
        self.thread = thread
        self.root = config["STORAGE_ROOT"]
        self.token = presence.HOLDER  # names this process in socket rows and leases
        self.closed = False
        # A host on a loop of its own (commands, scripts) sends its calls to others.
        self.placement = import_string(placement_path(config))(
            self, config, can_host=thread is None
        )
        # Litestream replication (REPLICATION), or None; refuses to start without its
        # daemon. A process that only sends its calls to hosts elsewhere needs none.
        hosts_here = self.placement.can_host or not self.placement.distributed
        self.replicator = Replicator.for_host(self, config) if hosts_here else None
        self.env = Env()
        self.activations = OrderedDict()
        self.open_shards = OrderedDict()
        self.commit_executor = ThreadPoolExecutor(
            config["COMMIT_THREADS"], thread_name_prefix="durable-objects-commit"
        )
        self._sync_executor = None  # threads for Meta.run_sync_on_thread, made on first use
        self.slow_handler = slow_handler_threshold(config)  # seconds; 0: no warning
        self.catalog = CatalogWriter(self)
        self.outbox = Outbox(loop, distributed=self.placement.distributed)
        self._sync_methods = {}
        self._sync_handlers = {}  # (cls, handler name) -> sync_handler()
        self.busy = 0  # activations whose runner task is at work
        self.starting = 0  # runner tasks created that have not started yet
        self.constructions = 0  # instances constructed (activations and wakes)
        self.commits = 0  # durable commits (each one fsync)
        self.tick_interval = 1.0
        self._tick_handle = None
        self.alarms = import_string(alarm_backend_path(config))(self)
        loop.call_soon_threadsafe(self.placement.start)
        if thread is None:  # a server process: re-arm the alarms pending under the root
            loop.call_soon_threadsafe(self.alarms.start)
            if self.replicator is not None:  # and delete old replica generations
                loop.call_soon_threadsafe(self.replicator.start)

    # -- placement -----------------------------------------------------------------------

    def holds(self, hex_id):
        """True if this host may run and answer for the object now."""
        return self.placement.holds(hex_id)

    def route(self, cls, object_id, event, hops=0):
        """Queue event here, or send it to the object's holder; return its outcome's future."""
        return self.placement.route(cls, object_id, event, hops)

    @property
    def usable(self):
        return not self.closed and self.loop.is_running() and not self.loop.is_closed()

    # -- events --------------------------------------------------------------------------

    def dispatch(self, cls, object_id, event):
        """Deliver event to the object's activation (created if needed); return its future."""
        return self.submit(self.activation(cls, object_id), event)

    def submit(self, activation, event):
        event.future = self.loop.create_future()
        if event.timed:
            self.track(event)
        activation.submit(event)
        return event.future

    def track(self, event):
        """Fail the event's future with CallTimeout if no outcome arrives in time."""
        event.timer = self.loop.call_later(get_config()["CALL_TIMEOUT"], self._expire, event)

    @property
    def sync_executor(self):
        """The threads that run sync handlers of classes with Meta.run_sync_on_thread."""
        if self._sync_executor is None:
            self._sync_executor = ThreadPoolExecutor(
                get_config()["SYNC_HANDLER_THREADS"], thread_name_prefix="durable-objects-sync"
            )
        return self._sync_executor

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

    def sync_handler(self, cls, name):
        """True if cls defines handler name (fetch, websocket_message) as a plain function."""
        key = (cls, name)
        sync = self._sync_handlers.get(key)
        if sync is None:
            handler = getattr(cls, name, None)
            sync = handler is not None and not inspect.iscoroutinefunction(handler)
            self._sync_handlers[key] = sync
        return sync

    def resubmit(self, cls, object_id, event):
        """Give a reset instance's queued event to a new activation, or, in a cluster where
        this host no longer holds the object, to its holder (the caller's future follows)."""
        if self.holds(str(object_id)):
            self.activation(cls, object_id).submit(event)
            return
        waiting = event.future
        routed = self.route(cls, object_id, event)

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

    def activation(self, cls, object_id):
        """The object's activation in this host, made (not yet constructed) if needed."""
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

    def find_activation(self, hex_id):
        """The activation of the object with hex id hex_id in this host, or None."""
        for activation in list(self.activations.values()):
            if activation.hex == hex_id:
                return activation
        return None

    def hibernate(self, activation):
        """Drop the instance from memory (its shard stays parked) and tell the placement."""
        self.catalog.touch(activation)
        activation.hibernate()
        self.placement.hibernated(activation.hex)

    async def evict(self, keys=None, *, force=False):
        """Hibernate the activations of keys (every one if None), each once it is idle.

        With force=True, reset them at once instead, even a stuck one: their running and
        held events fail with ObjectReset, their queued events go to a fresh instance.
        """
        targets = list(self.activations.values())
        if keys is not None:
            targets = [a for a in targets if a.key in keys]
        for activation in targets:
            if force:
                self.catalog.touch(activation)
                activation.force_reset(ObjectReset("The object was evicted; it was reset."))
                continue
            await wait_idle(activation)
            if self.activations.get(activation.key) is activation:
                self.hibernate(activation)

    def reset_object(self, hex_id, reason):
        """Drop the object's instance at once (its commits would be fenced); storage stays."""
        activation = self.find_activation(hex_id)
        if activation is not None:
            activation.reset(FencedError(reason))

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
        if shard is None:
            return
        replicator = self.replicator
        if replicator is not None and str(shard.path) in replicator.registered:
            shard.close(lambda close: self.close_later(replicator.closing(shard.path, close)))
        else:
            shard.close(self.close_later)

    def close_parked_shard(self, key):
        """Close, here and now, the shard a hibernated activation of key left open."""
        shard = self.open_shards.pop(key, None)
        if shard is not None and shard.is_open:
            shard.close()

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
                self.hibernate(activation)

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
        interval = min(1.0, max(0.02, min(hibernate_after, get_config()["EVENT_DEADLINE"]) / 4))
        if self._tick_handle is None or interval < self.tick_interval:
            self.tick_interval = min(self.tick_interval, interval)
            if self._tick_handle is not None:
                self._tick_handle.cancel()
            self._tick_handle = self.loop.call_later(self.tick_interval, self._tick)

    def _tick(self):
        """Hibernate idle objects, reset stuck ones, write the catalog; every tick_interval s."""
        self._tick_handle = None
        if self.closed:
            return
        now = time.monotonic()
        deadline = get_config()["EVENT_DEADLINE"]
        for activation in list(self.activations.values()):
            if activation.stack and now - activation.running_since >= deadline:
                activation.exceed_deadline(deadline)
            elif activation.idle and now - activation.last_active >= activation.hibernate_after:
                self.hibernate(activation)
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
            self.hibernate(activation)
        for key in list(self.open_shards):
            self.release_shard(key)

    def shutdown(self):
        """Drop every instance and write the catalog; run on the host's loop or after it."""
        if not self.closed:
            self.stop_objects()
        self.placement.close()
        self.catalog.flush_sync()
        self.commit_executor.shutdown(wait=False)
        if self._sync_executor is not None:
            self._sync_executor.shutdown(wait=False)
        self.catalog.executor.shutdown(wait=False)
        if self.replicator is not None:
            self.replicator.close()


def slow_handler_threshold(config):
    """Seconds a handler may hold the loop before a warning; 0 for no warning."""
    value = config["SLOW_HANDLER_WARNING"]
    if value is None:
        return 0.1 if settings.DEBUG else 0
    return value or 0
