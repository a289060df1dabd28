"""Timers on a host's loop that deliver objects' alarms: one per object, the latest wins.

The alarm's time lives in the shard; a timer is only a reminder of it. When it fires, an
``AlarmDelivery`` goes to the object through the host's placement (here, or to the holder
elsewhere), and the object runs ``alarm()`` only if its stored alarm is due. The local
backend has nothing else, so a delivery that could not reach the object is tried again
with backoff; the RQ backend keeps an RQ job behind each timer, so its timers give up
and leave the rest to the job (``retry=False``).
"""

import asyncio
import logging
import time

from durable_objects.exceptions import DurableObjectError

from .events import AlarmDelivery

logger = logging.getLogger("durable_objects.alarms")

MAX_DELIVERY_BACKOFF = 60.0
# Deliveries under way at once. A burst of timers otherwise puts every object's event in
# one turn of the loop, which then holds everything else (lease renewals, heartbeats,
# other calls) for as long as the whole burst takes.
MAX_CONCURRENT_DELIVERIES = 32


class AlarmTimers:
    """The alarm timers of one host, keyed by (label, hex id)."""

    def __init__(self, host, *, retry=True, early_within=None):
        self.host = host
        self.retry = retry
        # A delivery that found the alarm not yet due (another clock, a moved alarm) arms
        # the timer again for the new time; with early_within, only if it is that close.
        self.early_within = early_within
        self.handles = {}  # (label, hex) -> asyncio.TimerHandle
        self.failures = {}  # (label, hex) -> deliveries in a row that did not reach it
        self.deliveries = set()
        self.slots = None  # an asyncio.Semaphore, made on the loop at the first delivery
        self.closed = False

    def __contains__(self, key):
        return key in self.handles

    def set(self, label, hex_id, due):
        """Arm (or cancel, with due None) the object's timer; on the host's loop."""
        key = (label, hex_id)
        handle = self.handles.pop(key, None)
        if handle is not None:
            handle.cancel()
        if due is None or self.closed:
            return
        loop = self.host.loop
        delay = max(0.0, due - time.time())
        self.handles[key] = loop.call_at(loop.time() + delay, self._fire, key)

    def close(self):
        """Cancel every timer and every delivery under way."""
        self.closed = True
        for handle in self.handles.values():
            handle.cancel()
        self.handles.clear()
        for task in list(self.deliveries):
            task.cancel()

    def _fire(self, key):
        self.handles.pop(key, None)
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
        if self.slots is None:
            self.slots = asyncio.Semaphore(MAX_CONCURRENT_DELIVERIES)
        event = AlarmDelivery()
        async with self.slots:
            try:
                ok, value = await self.host.route(cls, object_id, event)
            except DurableObjectError as exc:  # CallTimeout: the handler is still running
                ok, value = False, {"message": str(exc)}
        if ok:
            self.failures.pop(key, None)
            result = event.decode(value)
            if not result["ran"] and self._rearms(key, result["due_at"]):
                self.set(label, hex_id, result["due_at"])  # the timer was early
            return
        message = value.get("message") if isinstance(value, dict) else value
        if not self.retry:
            logger.info("Alarm delivery to %s failed (%s); its job will.", object_id, message)
            return
        # The event never reached the handler's end (a reset, the constructor failed):
        # the alarm is still stored; try again with backoff.
        failures = self.failures.get(key, 0) + 1
        self.failures[key] = failures
        delay = min(MAX_DELIVERY_BACKOFF, 2.0**failures)
        logger.warning(
            "Alarm delivery to %s failed (%s); trying again in %.0f s.", object_id, message, delay
        )
        if key not in self.handles and not self.closed:
            self.set(label, hex_id, time.time() + delay)

    def _rearms(self, key, due_at):
        if due_at is None or key in self.handles:
            return False
        return self.early_within is None or due_at - time.time() <= self.early_within
