"""The embedded default's alarms: a timer on the host's loop for each object's alarm.

The alarm's time lives in the shard; the timer is only a reminder of it. A server process
(runserver, daphne, runobjects) re-arms every pending alarm when its host starts, from
the catalog and from the shards written since (``sweep.pending_alarms``), so a restart
loses none. Handler failures are retried by the object itself (``AlarmRetry``); a
delivery that could not reach the object (a reset, a timeout) is tried again here.
"""

import logging
import time

from durable_objects.exceptions import DurableObjectError

from .base import BaseAlarmBackend
from .events import AlarmDelivery

logger = logging.getLogger("durable_objects.alarms")

MAX_DELIVERY_BACKOFF = 60.0


class LocalAlarms(BaseAlarmBackend):
    """Timers for the alarms of the objects this host runs."""

    def __init__(self, host):
        super().__init__(host)
        self.timers = {}  # (label, hex) -> asyncio.TimerHandle
        self.due = {}  # (label, hex) -> due time of the timer
        self.failures = {}  # (label, hex) -> deliveries in a row that did not reach it
        self.deliveries = set()

    # -- scheduling ----------------------------------------------------------------------

    def schedule(self, label, hex_id, due):
        """Arm (or cancel, with due None) the object's timer; called after a commit."""
        key = (label, hex_id)
        timer = self.timers.pop(key, None)
        self.due.pop(key, None)
        if timer is not None:
            timer.cancel()
        if due is None or self.closed:
            return
        loop = self.host.loop
        delay = max(0.0, due - time.time())
        self.timers[key] = loop.call_at(loop.time() + delay, self._fire, key)
        self.due[key] = due

    def start(self):
        """Re-arm the pending alarms of every object under the storage root (at host start)."""
        from .sweep import pending_alarms

        loop = self.host.loop

        def found(alarms):
            for (label, hex_id), due in alarms.items():
                if (label, hex_id) not in self.timers:
                    self.schedule(label, hex_id, due)

        def load():
            try:
                alarms = pending_alarms()
            except Exception as exc:  # not migrated yet, or no database: nothing to re-arm
                logger.info("Re-arming alarms at start skipped: %s", exc)
                return
            finally:
                from django.db import connection

                connection.close()
            if not loop.is_closed():
                loop.call_soon_threadsafe(found, alarms)

        self.host.catalog.executor.submit(load)

    def close(self):
        """Cancel every timer and every delivery under way."""
        self.closed = True
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        for task in list(self.deliveries):
            task.cancel()

    # -- delivery ------------------------------------------------------------------------

    def _fire(self, key):
        self.timers.pop(key, None)
        self.due.pop(key, None)
        if self.closed:
            return
        task = self.host.loop.create_task(self._deliver(key))
        self.deliveries.add(task)
        task.add_done_callback(self.deliveries.discard)

    async def _deliver(self, key):
        from durable_objects.registry import registry

        label, hex_id = key
        try:
            cls = registry.get(label)
            object_id = cls.objects.id_from_string(hex_id)
        except (LookupError, ValueError) as exc:
            logger.warning("Alarm for %s %s dropped: %s", label, hex_id, exc)
            return
        event = AlarmDelivery()
        try:
            ok, value = await self.host.dispatch(cls, object_id, event)
        except DurableObjectError as exc:  # CallTimeout: the handler is still running
            ok, value = False, {"message": str(exc)}
        if ok:
            self.failures.pop(key, None)
            result = event.decode(value)
            if not result["ran"] and result["due_at"] is not None and key not in self.timers:
                self.schedule(label, hex_id, result["due_at"])  # the timer was early
            return
        # The event never reached the handler's end (a reset, the constructor failed):
        # the alarm is still stored; try again with backoff.
        failures = self.failures.get(key, 0) + 1
        self.failures[key] = failures
        delay = min(MAX_DELIVERY_BACKOFF, 2.0**failures)
        logger.warning(
            "Alarm delivery to %s failed (%s); trying again in %.0f s.",
            object_id,
            value.get("message") if isinstance(value, dict) else value,
            delay,
        )
        if key not in self.timers and not self.closed:
            self.schedule(label, hex_id, time.time() + delay)
