"""The embedded default's alarms: a timer on the host's loop for each object's alarm.

The alarm's time lives in the shard; the timer is only a reminder of it. A server process
(runserver, daphne, runobjects) re-arms every pending alarm when its host starts, from
the catalog and from the shards written since (``sweep.pending_alarms``), so a restart
loses none. Handler failures are retried by the object itself (``AlarmRetry``); a
delivery that could not reach the object (a reset, a timeout) is tried again here.
"""

import logging

from .base import BaseAlarmBackend
from .timers import AlarmTimers

logger = logging.getLogger("durable_objects.alarms")


class LocalAlarms(BaseAlarmBackend):
    """Timers for the alarms of the objects this host runs."""

    def __init__(self, host):
        super().__init__(host)
        self.timers = AlarmTimers(host, retry=True)

    def schedule(self, label, hex_id, due):
        """Arm (or cancel, with due None) the object's timer; called after a commit."""
        if not self.closed:
            self.timers.set(label, hex_id, due)

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
        self.timers.close()
