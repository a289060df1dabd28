"""One live instance of one object: its queue, its transaction, its output gate.

Events run one at a time in arrival order. Consecutive queued events share one SQLite
transaction (group commit); the first owns it and each later one runs in a savepoint, so
a failing event undoes only its own writes. Their replies are held until the commit
returns (the output gate). See docs/topics/events-and-transactions.md.
"""

import asyncio
import contextlib
import contextvars
import inspect
import itertools
import logging
import sqlite3
import time
from collections import deque

from durable_objects.conf import get_config
from durable_objects.events.base import current_event
from durable_objects.exceptions import ObjectReset
from durable_objects.ids import DurableObjectId
from durable_objects.sockets.registry import SocketRegistry
from durable_objects.storage.shard import shard_path

from . import waits
from .catalog import UNKNOWN
from .invocation import InvocationMixin, handler_name
from .output_gate import OutputGateMixin
from .shards import ShardMixin
from .state import DurableObjectState

logger = logging.getLogger("durable_objects.runtime")

_serials = itertools.count(1)


class Activation(InvocationMixin, OutputGateMixin, ShardMixin):
    """The live instance of one object in this host, and everything it holds."""

    def __init__(self, host, cls, object_id):
        self.host = host
        self.cls = cls
        # A copy: the activation learns the name from the shard, and the caller's ID
        # object must not change under it.
        self.id = DurableObjectId(object_id.label, str(object_id), object_id.name)
        self.key = object_id.key
        self.hex = str(object_id)
        self.serial = next(_serials)  # numbers this activation's socket messages
        self.path = shard_path(host.root, cls._meta.label, str(object_id))
        self.hibernate_after = cls._meta.hibernate_after
        self.queue = deque()
        self.instance = None
        self.ctx = None
        self.shard = None
        self.epoch = None
        self.stack = []  # events running now; more than one only for call-chain reentry
        self.held = []  # (event, outcome) pairs waiting for the commit
        self.gates = []  # block_concurrency_while() tasks
        self.runner = None
        self.reentrant = set()  # tasks of re-entrant events
        self.inline = False  # an event is running in its caller's task (run_inline)
        self.running_since = None  # when the oldest running event started (EVENT_DEADLINE)
        self.outgoing = []  # (running event, target hex, call event) of calls in progress
        self.threaded = cls._meta.run_sync_on_thread
        self.worker = None  # the concurrent future of a sync handler on a worker thread
        self.worker_thread = None  # that thread's ident while it runs
        self.last_active = time.monotonic()
        self.closed = False
        self.abort_cause = None
        self.created_at = None  # from the shard's meta once it is open
        self.alarm_changed = False  # an event wrote the alarm row since the last commit
        self.alarm_due = UNKNOWN  # the committed alarm's due time, read when the shard opens
        self.replica_gen = None  # the replica generation of the local copy (REPLICATION)
        self.retiring = None  # generations retired once replica_gen holds a whole copy
        self.restored = None  # an ObjectReset once a restore replaced the database (restore.py)
        # Replies wait for the replica after each commit (DURABILITY "replicated").
        self.gated = host.replicator is not None and host.replicator.replicated
        self.sockets = SocketRegistry(self)

    # -- arrival -------------------------------------------------------------------------

    def submit(self, event):
        """Queue event (or run it at once if its call chain is already inside this object).

        A call that would wait behind an event that itself waits on the call (two call
        chains crossed) fails at once with DeadlockError (``waits``).
        """
        if self.stack and event.chain:
            running = {e.token for e in self.stack if e.token is not None}
            if running.intersection(event.chain):
                task = self._spawn(self._run_reentrant(event))
                self.reentrant.add(task)
                task.add_done_callback(self.reentrant.discard)
                return
            deadlock = waits.find_deadlock(self, event)
            if deadlock is not None:
                self.host.deliver(event, (False, event.encode_error(deadlock)))
                return
        self.queue.append(event)
        if event.force_after is not None:
            self.host.loop.call_later(event.force_after, self._unstick, event)
        if self.runner is None and not self.inline:
            self._start_runner()

    def _unstick(self, event):
        """Reset the object if event (the admin's evict) still waits in its queue."""
        if self.closed or event not in self.queue:
            return
        self.queue.remove(event)
        logger.warning(
            "%s %s: an eviction waited %s s behind a running event; resetting the instance.",
            self.cls._meta.label,
            self.hex,
            event.force_after,
        )
        self.force_reset(
            ObjectReset("The object was stuck and evicted from the admin; it was reset.")
        )

    def can_run_inline(self, event):
        """True if event may run in the caller's task: idle, constructed, a sync handler
        (a sync method for a call, a sync fetch() for a request, a sync
        websocket_message() for a socket's message)."""
        if self.instance is None or not self.idle or self.closed or self.threaded:
            return False
        if event.kind == "socket_message":
            return self.host.sync_handler(self.cls, "websocket_message")
        return self._sync_handler(event)

    async def run_inline(self, event):
        """Run event in the caller's task; return its outcome, or None if it awaits a commit.

        The fast path of an idle object: a sync method runs to its end without a trip
        through the event loop. If it wrote, the caller yields once so that callers ready
        at the same moment queue their events behind it; if any did, the runner commits
        them all together (group commit) and the caller waits on event.future.
        """
        self.inline = True
        try:
            outcome = await self._run_event(event)
            shard = self.shard
            dirty = shard is not None and shard.in_transaction and shard.dirty
            if dirty and not self.queue:
                try:
                    await asyncio.sleep(0)
                except asyncio.CancelledError:
                    self._hand_off(event, outcome)  # the writes still commit, in order
                    raise
        finally:
            self.inline = False
        if self.queue or (dirty and (self.host.busy > 0 or self.gated)):
            self._hand_off(event, outcome)
            return None
        try:
            wrote = self._commit_now() if shard is not None and shard.in_transaction else False
            if not wrote:  # a read: answer only while this host still holds the object
                self._check_lease()
            elif self.host.replicator is not None:  # "local" durability: replicate behind
                self.host.replicator.replicate_behind(self)
        except Exception as exc:
            cause = ObjectReset(f"Commit failed ({exc}); the object was reset.")
            self.reset(cause)
            return (False, event.encode_error(cause))
        outcome = event.released(outcome, self)
        self._release_outbox(event, outcome)
        if self.abort_cause is not None:
            self.reset(self.abort_cause)
        return outcome

    def _hand_off(self, event, outcome):
        """Hold the outcome for the runner, which commits it with the queued events."""
        event.future = self.host.loop.create_future()
        self.held.append((event, outcome))
        if self.runner is None:
            self._start_runner()

    def _start_runner(self):
        """Start the runner task; until it starts it counts in ``host.starting``, so the
        objects ahead of it in the loop's queue know they are not alone at work."""
        host = self.host
        host.starting += 1
        started = False

        async def drain():
            nonlocal started
            started = True
            host.starting -= 1
            await self._drain()

        def done(task):
            if not started:  # cancelled before it ran
                host.starting -= 1

        self.runner = self._spawn(drain())
        self.runner.add_done_callback(done)

    def _spawn(self, coroutine):
        """Start a task of this object in a context of its own, not its caller's.

        A caller's context holds its request's state, such as asgiref's executor for
        thread-sensitive code; an object that inherited it could wait on a thread that
        is itself waiting on the object.
        """
        return self.host.loop.create_task(coroutine, context=contextvars.Context())

    @property
    def idle(self):
        return (
            self.runner is None
            and not self.inline
            and not self.queue
            and not self.stack
            and not self.held
            and not self.gates
        )

    # -- running -------------------------------------------------------------------------

    async def _drain(self):
        self.host.busy += 1
        try:
            while (self.queue or self.held) and not self.closed:
                await self._run_batch()
        finally:
            self.host.busy -= 1
            self.runner = None
            self.last_active = time.monotonic()

    async def _run_batch(self):
        limit = get_config()["GROUP_COMMIT_MAX_EVENTS"]
        count = 0
        while self.queue and count < limit and self.abort_cause is None and not self.closed:
            event = self.queue.popleft()
            if event.future.done():  # the caller gave up before the event started
                continue
            outcome = await self._run_in_callers_context(event)
            self.held.append((event, outcome))  # self.held may be a new list after the await
            count += 1
        await self._commit_held()

    def _run_in_callers_context(self, event):
        """Run the event in its caller's context (a task of its own), not the runner's.

        Code in the object then sees what its caller's code would, such as the thread
        that asgiref runs its thread-sensitive work in while the caller waits.
        """
        if event.context is None or (
            event.kind == "call" and event.method in self.host.sync_methods(self.cls)
        ):
            # A sync method cannot await anything that would look at the context: run
            # it in the runner's task, without the cost of a task of its own.
            return self._run_event(event)
        return self.host.loop.create_task(self._run_event(event), context=event.context)

    async def _run_reentrant(self, event):
        outcome = await self._run_in_callers_context(event)
        self.held.append((event, outcome))
        await self._commit_held()

    async def _run_event(self, event):
        if not self.stack:
            self.running_since = time.monotonic()
        self.stack.append(event)
        token = current_event.set((self, event))
        try:
            if self.instance is None:
                await self._construct()
            elif not self.shard_is_open:
                await self.open_shard_before_event()
            if self.threaded and self._sync_handler(event):
                result = await self._invoke_on_thread(event)
            elif self.host.slow_handler:
                result = self._invoke_timed(event)
            else:
                result = event.invoke(self.instance, self)
            if inspect.isawaitable(result):
                result = await result
            await self._await_gates()
            if self.abort_cause is not None:  # abort() stands even if the handler caught it
                raise self.abort_cause
            if hasattr(event, "encode_async"):
                data = await event.encode_async(result)
            else:
                data = event.encode(result)
            self._end_event(ok=True)
            outcome = (True, data)
        except Exception as exc:
            self._end_event(ok=False)
            event.outbox = None  # a failed event sends nothing, as it writes nothing
            outcome = (False, event.encode_error(exc))
        finally:
            current_event.reset(token)
            self.stack.pop()
            self.last_active = time.monotonic()
        return outcome

    async def _construct(self):
        """Run the constructor (and its block_concurrency_while) in a savepoint of its own.

        With replication, the local copy is made the newest one first (a restore from the
        replica after a move).
        """
        replicator = self.host.replicator
        if replicator is not None and self.replica_gen is None:
            await replicator.prepare(self)
        await self.open_shard_before_event()
        if self.id.name is None and not self.shard_is_open and self.path.exists():
            self._open_shard()  # learns the name recorded in the shard
        self.ctx = DurableObjectState(self)
        try:
            instance = self.cls(self.ctx, self.host.env)
            await self._await_gates()
        except Exception:
            self._end_event(ok=False)
            self.ctx = None
            raise
        self._end_event(ok=True)
        self.instance = instance
        self.host.constructions += 1

    async def _await_gates(self):
        while self.gates:
            task = self.gates.pop(0)
            try:
                await task
            except Exception as exc:
                cause = ObjectReset(
                    f"block_concurrency_while() failed: {exc!r}; the object resets."
                )
                self.abort_cause = cause
                raise cause from exc

    def _end_event(self, ok):
        if self.shard is not None and self.shard.is_open:
            self.shard.end_event(ok)

    # -- ending --------------------------------------------------------------------------

    def abort(self, reason):
        cause = ObjectReset(f"The object was aborted: {reason}")
        self.abort_cause = cause
        return cause

    def exceed_deadline(self, deadline):
        """Reset the instance whose event ran past EVENT_DEADLINE (the host's tick)."""
        logger.warning(
            "%s %s: an event (%s) ran past EVENT_DEADLINE (%g s); resetting the instance.",
            self.cls._meta.label,
            self.hex,
            ", ".join(handler_name(event) for event in self.stack),
            deadline,
        )
        self.force_reset(
            ObjectReset(
                f"The object's event ran past EVENT_DEADLINE ({deadline:g} s); the object "
                "was reset. Retry if the call is idempotent."
            )
        )

    def force_reset(self, cause):
        """Reset now, even with events running: they and the held ones fail with cause.

        Their tasks are cancelled (a sync handler on a worker thread runs on, but its
        storage is closed to it); queued events go to a fresh activation.
        """
        if self.closed:
            return
        failed = [*self.stack, *(event for event, _ in self.held)]
        self.held = []
        for event in failed:
            if event.future is not None:
                self.host.deliver(event, (False, event.encode_error(cause)))
        tasks = [self.runner, *self.reentrant]
        self.reset(cause)
        current = asyncio.current_task()
        for task in tasks:
            if task is not None and task is not current:
                task.cancel()

    def reset(self, cause):
        """Drop the instance (storage stays); queued events go to a fresh activation."""
        if self.closed:
            return
        self._close(park=False)
        pending = [event for event in self.queue if not event.future.done()]
        self.queue.clear()
        for event in pending:
            self.host.resubmit(self.cls, self.id, event)

    def hibernate(self):
        """Drop the idle instance from memory; the next event constructs it again.

        Its shard stays open, parked in the host, until MAX_OPEN_SHARDS needs the room.
        """
        if not self.closed:
            self._close(park=True)

    def _close(self, park):
        self.closed = True
        self.host.forget(self)
        shard = self.shard
        worker = self.worker
        if shard is not None and shard.is_open and worker is not None and not worker.done():
            # A worker thread still runs a handler: stop its statement and roll back now, so
            # the next activation can claim the shard, and close the connection after it.
            if self.host.open_shards.get(self.key) is shard:
                del self.host.open_shards[self.key]
            shard.conn.interrupt()
            with contextlib.suppress(sqlite3.Error):
                shard.rollback()
            loop = self.host.loop
            worker.add_done_callback(
                lambda _: loop.call_soon_threadsafe(self._close_after_worker, shard)
            )
        elif shard is not None and shard.is_open:
            shard.rollback()
            if not park:
                self.host.release_shard(self.key, shard)
        for task in self.gates:
            task.cancel()
        self.gates.clear()
        self.instance = None
        self.ctx = None


def wait_idle(activation):
    """Return an awaitable that finishes when the activation has no work left."""

    async def _wait():
        while not activation.idle and not activation.closed:
            runner = activation.runner
            if runner is not None:
                await asyncio.shield(runner)
            else:
                await asyncio.sleep(0.001)

    return _wait()
