"""How an event's handler runs: on the loop (timed for the slow-handler warning) or, for a
class with ``Meta.run_sync_on_thread``, a sync handler on a worker thread."""

import asyncio
import contextlib
import contextvars
import logging
import sqlite3
import threading
import time

logger = logging.getLogger("durable_objects.runtime")


class InvocationMixin:
    """The handler-running half of ``Activation``."""

    def _sync_handler(self, event):
        """True if event runs a sync method or a sync fetch() (Meta.run_sync_on_thread)."""
        if event.kind == "call":
            return event.method in self.host.sync_methods(self.cls)
        if event.kind == "fetch":
            return self.host.sync_handler(self.cls, "fetch")
        return False

    async def _invoke_on_thread(self, event):
        """Run the sync handler on a worker thread; the loop serves other objects meanwhile.

        The runner awaits it, so the object still runs one event at a time, and nothing on
        the loop touches this object's shard meanwhile (a reset closes it afterwards).
        """
        context = contextvars.copy_context()  # current_event, for storage and sockets
        worker = self.host.sync_executor.submit(context.run, self._invoke_here, event)
        self.worker = worker
        try:
            return await asyncio.wrap_future(worker)
        finally:
            if self.worker is worker:
                self.worker = None

    def _invoke_here(self, event):
        self.worker_thread = threading.get_ident()
        try:
            return event.invoke(self.instance, self)
        finally:
            self.worker_thread = None

    def _invoke_timed(self, event):
        """Invoke event, warning if its sync part held the loop past SLOW_HANDLER_WARNING."""
        started = time.perf_counter()
        try:
            return event.invoke(self.instance, self)
        finally:
            held = time.perf_counter() - started
            if held > self.host.slow_handler:
                logger.warning(
                    "%s.%s held the event loop for %.3f s (SLOW_HANDLER_WARNING is %g s); "
                    "every object of the process waited. Make it async, or set "
                    "Meta.run_sync_on_thread = True.",
                    self.cls._meta.label,
                    handler_name(event),
                    held,
                    self.host.slow_handler,
                )

    def _close_after_worker(self, shard):
        if shard.is_open:
            with contextlib.suppress(sqlite3.Error):
                shard.rollback()
            shard.close(self.host.close_later)


def handler_name(event):
    """What an event runs, for messages: ``m()`` for a call of m, else its kind."""
    method = getattr(event, "method", None)
    return f"{method}()" if method is not None else f"{event.kind} event"
