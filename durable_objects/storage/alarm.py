"""The alarm row of a shard (``_do_alarm``) and ``get_alarm``/``set_alarm``/``delete_alarm``.

One row, ``id = 1``: ``scheduled_at`` is the time the object set (what ``get_alarm()``
returns), ``due_at`` when the next delivery is due (``scheduled_at``, or a retry's time
after a failure), ``retry_count`` the failed attempts so far, and the history the admin
shows (``last_error``, ``last_error_at``, ``last_fired_at``, ``abandoned_at``).
The row is written in the event's transaction: an event that rolls back leaves the old
alarm. After a commit that changed it, the activation tells the alarm backend.
"""

import math
import numbers
from datetime import datetime

from .schedules import wake_at

ALARM_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS main._do_alarm (id INTEGER PRIMARY KEY CHECK (id = 1), "
    "scheduled_at REAL, due_at REAL, retry_count INTEGER NOT NULL DEFAULT 0, "
    "last_error TEXT, last_error_at REAL, last_fired_at REAL, abandoned_at REAL)"
)
COLUMNS = (
    "scheduled_at",
    "due_at",
    "retry_count",
    "last_error",
    "last_error_at",
    "last_fired_at",
    "abandoned_at",
)
# 9999-12-31T23:59:59Z: later than this is not a date (milliseconds passed as seconds?).
LATEST = 253402300799.0


def to_timestamp(when):
    """UNIX seconds for an alarm time: an aware datetime or a finite real number."""
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(
                "set_alarm() needs an aware datetime (a naive one has no time zone to read "
                "it in); use django.utils.timezone.now() + timedelta(...), or UNIX seconds."
            )
        return when.timestamp()
    if isinstance(when, bool) or not isinstance(when, numbers.Real):
        raise TypeError(
            "set_alarm() takes an aware datetime or UNIX seconds (int or float), "
            f"not {type(when).__name__}."
        )
    seconds = float(when)
    if not math.isfinite(seconds):
        raise ValueError(f"set_alarm() needs a finite time, not {seconds}.")
    if seconds > LATEST:
        raise ValueError(
            f"set_alarm({when!r}) is after the year 9999; alarm times are UNIX seconds, "
            "not milliseconds (time.time() + 60 is a minute from now)."
        )
    return seconds


def read_row(shard):
    """The alarm row as a dict, or None if the object never set an alarm."""
    row = shard.execute(f"SELECT {', '.join(COLUMNS)} FROM main._do_alarm WHERE id = 1").fetchone()
    return None if row is None else dict(zip(COLUMNS, row, strict=True))


def due_at(shard):
    """When the next delivery is due (UNIX seconds), or None.

    The earliest of the alarm's own due time, the next schedule and the queue's head: the
    schedules ride on the one alarm (``schedules.py``).
    """
    return wake_at(shard)


def write(shard, **values):
    """Set columns of the alarm row, creating it if needed."""
    names = ", ".join(values)
    marks = ", ".join("?" * len(values))
    updates = ", ".join(f"{name} = excluded.{name}" for name in values)
    shard.execute(
        f"INSERT INTO main._do_alarm (id, {names}) VALUES (1, {marks}) "
        f"ON CONFLICT (id) DO UPDATE SET {updates}",
        tuple(values.values()),
    )


class AlarmMixin:
    """The alarm methods of DurableObjectStorage."""

    def get_alarm(self):
        """The alarm's time in UNIX seconds, or None if no alarm is set."""
        shard = self._existing_shard()
        if shard is None:
            return None
        row = shard.execute("SELECT scheduled_at FROM main._do_alarm WHERE id = 1").fetchone()
        return None if row is None else row[0]

    def set_alarm(self, when):
        """Replace the object's alarm: at ``when`` (an aware datetime or UNIX seconds).

        Takes effect when the event commits. A time in the past fires at once.
        """
        seconds = to_timestamp(when)
        activation = self._activation
        if getattr(activation.cls, "alarm", None) is None:
            raise TypeError(
                f"{activation.cls.__name__} defines no alarm(info) handler; define one "
                "before setting an alarm."
            )
        write(self._shard(), scheduled_at=seconds, due_at=seconds, retry_count=0)
        activation.alarm_changed = True

    def delete_alarm(self):
        """Cancel the alarm, if one is set (its pending retries too)."""
        shard = self._existing_shard()
        if shard is None:
            return
        cursor = shard.execute(
            "UPDATE main._do_alarm SET scheduled_at = NULL, due_at = NULL, retry_count = 0 "
            "WHERE id = 1 AND due_at IS NOT NULL"
        )
        if cursor.rowcount:
            self._activation.alarm_changed = True
