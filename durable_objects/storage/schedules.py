"""The schedules and the queue of a shard (``_do_schedules``, ``_do_queue``), and the wake time.

An object has one alarm (``alarm.py``); its schedules and queued tasks ride on it. Each
schedule row keeps its kind (``delayed``, ``scheduled``, ``cron``, ``interval``), the method
and its arguments (msgpack, by value), ``scheduled_at`` (the run's nominal time, what the
run's info reports) and ``due_at`` (when the run is due: ``scheduled_at``, or a retry's
time). Queue rows are ordered by ``seq``; the head is the only one due (strict FIFO).

The object's wake time, what the alarm backend is told after a commit, is the earliest of
the user's alarm, the next schedule and the queue's head (``wake_at``). Rows are written
in the event's transaction, like the alarm row: an event that rolls back schedules nothing.
"""

import math
import numbers
import secrets
import time
from datetime import datetime, timedelta

from .cron import check_cron, next_run, time_zone, zone_name

SCHEDULES_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS main._do_schedules (id TEXT PRIMARY KEY, kind TEXT NOT NULL, "
    "method TEXT NOT NULL, args BLOB NOT NULL, cron TEXT, tz TEXT, interval REAL, "
    "scheduled_at REAL NOT NULL, due_at REAL NOT NULL, retry_count INTEGER NOT NULL DEFAULT 0, "
    "token TEXT NOT NULL, created_at REAL NOT NULL, runs INTEGER NOT NULL DEFAULT 0, "
    "last_run_at REAL, last_error TEXT, last_error_at REAL) WITHOUT ROWID"
)
SCHEDULES_INDEX = "CREATE INDEX IF NOT EXISTS main._do_schedules_due ON _do_schedules (due_at)"
QUEUE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS main._do_queue (seq INTEGER PRIMARY KEY, method TEXT NOT NULL, "
    "args BLOB NOT NULL, enqueued_at REAL NOT NULL, due_at REAL NOT NULL, "
    "retry_count INTEGER NOT NULL DEFAULT 0, last_error TEXT, last_error_at REAL)"
)
TABLES = ("_do_schedules", "_do_schedules_due", "_do_queue")

KINDS = ("delayed", "scheduled", "cron", "interval")
COLUMNS = (
    "id",
    "kind",
    "method",
    "args",
    "cron",
    "tz",
    "interval",
    "scheduled_at",
    "due_at",
    "retry_count",
    "token",
    "created_at",
    "runs",
    "last_run_at",
    "last_error",
    "last_error_at",
)
QUEUE_COLUMNS = (
    "seq",
    "method",
    "args",
    "enqueued_at",
    "due_at",
    "retry_count",
    "last_error",
    "last_error_at",
)
# A delay this long is a UNIX time passed by mistake (time.time() + 60).
LONGEST_DELAY = 1e9
MAX_ID_LENGTH = 200

WAKE_QUERY = (
    "SELECT (SELECT due_at FROM main._do_alarm WHERE id = 1), "
    "(SELECT min(due_at) FROM main._do_schedules), "
    "(SELECT due_at FROM main._do_queue ORDER BY seq LIMIT 1)"
)


def earliest(times):
    """The earliest of times that are not None, or None."""
    known = [t for t in times if t is not None]
    return min(known) if known else None


def wake_at(shard):
    """When the object next needs a delivery: the alarm, a schedule or the queue's head."""
    return earliest(shard.execute(WAKE_QUERY).fetchone())


# -- what a schedule's `when` means ------------------------------------------------------


def first_run(when, *, tz=None, now=None):
    """(kind, scheduled_at, cron, tz name) for ``ctx.schedule(when, ...)``.

    A number or a timedelta is a delay in seconds from now, an aware datetime a time, a
    str a cron expression (read in tz, Django's TIME_ZONE by default).
    """
    now = time.time() if now is None else now
    if isinstance(when, str):
        check_cron(when)
        zone = time_zone(tz)
        name = zone_name(zone)
        due = next_run(when, name, now)
        if due is None:
            raise ValueError(f"Cron expression {when!r} never matches a date.")
        return "cron", due, " ".join(when.split()), name
    if tz is not None:
        raise TypeError("tz= is for cron expressions only; a datetime carries its own zone.")
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(
                "schedule() needs an aware datetime (a naive one has no time zone to read it "
                "in); use django.utils.timezone.now() + timedelta(...), or seconds from now."
            )
        return "scheduled", when.timestamp(), None, None
    if isinstance(when, timedelta):
        return "delayed", now + when.total_seconds(), None, None
    delay = seconds(when, "schedule()", "a delay in seconds, an aware datetime or a cron str")
    if delay >= LONGEST_DELAY:
        raise ValueError(
            f"schedule({when!r}) is a delay of {delay:.0f} seconds, over 30 years: a number is "
            "seconds from now, not a UNIX time. For a UNIX time t pass "
            "datetime.fromtimestamp(t, UTC)."
        )
    return "delayed", now + delay, None, None


def seconds(value, what, takes):
    """A finite real number of seconds, or a TypeError/ValueError saying what was given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} takes {takes}, not {type(value).__name__}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} needs a finite number of seconds, not {value}.")
    return value


def interval_seconds(every):
    """The interval of ``schedule_every()``: positive seconds (a number or a timedelta)."""
    if isinstance(every, timedelta):
        every = every.total_seconds()
    every = seconds(every, "schedule_every()", "an interval in seconds or a timedelta")
    if every <= 0:
        raise ValueError(f"schedule_every() needs an interval above 0 seconds, not {every}.")
    if every >= LONGEST_DELAY:
        raise ValueError(f"schedule_every({every}) is an interval of over 30 years.")
    return every


def next_after_run(row, now):
    """The next scheduled time of a repeating schedule after a run at now, or None.

    Cron: the first match after the later of the scheduled time and now, so missed runs
    collapse into one. Interval: the next multiple of the interval from the scheduled
    time that is after now (the phase is kept; missed runs collapse the same way).
    """
    kind = row["kind"]
    if kind == "cron":
        return next_run(row["cron"], row["tz"], max(row["scheduled_at"], now))
    if kind == "interval":
        every = row["interval"]
        steps = max(1, math.floor((now - row["scheduled_at"]) / every) + 1)
        return row["scheduled_at"] + steps * every
    return None


def check_id(schedule_id):
    if not isinstance(schedule_id, str):
        raise TypeError(f"A schedule id is a str, not {type(schedule_id).__name__}.")
    if not schedule_id or len(schedule_id) > MAX_ID_LENGTH:
        raise ValueError(
            f"A schedule id has 1 to {MAX_ID_LENGTH} characters, not {len(schedule_id)}."
        )


def new_id():
    return secrets.token_hex(8)


# -- rows --------------------------------------------------------------------------------


def put(shard, *, schedule_id, kind, method, args, scheduled_at, cron=None, tz=None, every=None):
    """Insert or replace the schedule with this id (a replaced one's retries are dropped)."""
    now = time.time()
    shard.execute(
        "INSERT OR REPLACE INTO main._do_schedules (id, kind, method, args, cron, tz, interval, "
        "scheduled_at, due_at, retry_count, token, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
        (
            schedule_id,
            kind,
            method,
            args,
            cron,
            tz,
            every,
            scheduled_at,
            scheduled_at,
            secrets.token_hex(6),
            now,
        ),
    )


def exists(shard, schedule_id):
    row = shard.execute("SELECT 1 FROM main._do_schedules WHERE id = ?", (schedule_id,))
    return row.fetchone() is not None


def count(shard):
    return shard.execute("SELECT count(*) FROM main._do_schedules").fetchone()[0]


def read(shard, schedule_id):
    """The schedule row as a dict, or None."""
    row = shard.execute(
        f"SELECT {', '.join(COLUMNS)} FROM main._do_schedules WHERE id = ?", (schedule_id,)
    ).fetchone()
    return None if row is None else dict(zip(COLUMNS, row, strict=True))


def read_all(shard, limit=None):
    """Every schedule row, the next due first."""
    query = f"SELECT {', '.join(COLUMNS)} FROM main._do_schedules ORDER BY due_at, id"
    if limit is not None:
        query += f" LIMIT {int(limit)}"
    return [dict(zip(COLUMNS, row, strict=True)) for row in shard.execute(query)]


def delete(shard, schedule_id):
    """Delete the schedule; True if it existed."""
    cursor = shard.execute("DELETE FROM main._do_schedules WHERE id = ?", (schedule_id,))
    return cursor.rowcount > 0


def due(shard, now, limit):
    """(id, due_at, retry_count, token) of schedules due at now, the earliest first."""
    return shard.execute(
        "SELECT id, due_at, retry_count, token FROM main._do_schedules WHERE due_at <= ? "
        "ORDER BY due_at LIMIT ?",
        (now, limit),
    ).fetchall()


def update(shard, schedule_id, **values):
    sets = ", ".join(f"{name} = ?" for name in values)
    shard.execute(
        f"UPDATE main._do_schedules SET {sets} WHERE id = ?", (*values.values(), schedule_id)
    )


# -- the queue ---------------------------------------------------------------------------


def push(shard, method, args):
    """Append a task to the queue; return its sequence number."""
    now = time.time()
    return shard.execute(
        "INSERT INTO main._do_queue (seq, method, args, enqueued_at, due_at) VALUES ("
        "(SELECT coalesce(max(seq), 0) + 1 FROM main._do_queue), ?, ?, ?, ?) RETURNING seq",
        (method, args, now, now),
    ).fetchone()[0]


def queue_length(shard):
    return shard.execute("SELECT count(*) FROM main._do_queue").fetchone()[0]


def head(shard):
    """The queue's first task as a dict, or None."""
    row = shard.execute(
        f"SELECT {', '.join(QUEUE_COLUMNS)} FROM main._do_queue ORDER BY seq LIMIT 1"
    ).fetchone()
    return None if row is None else dict(zip(QUEUE_COLUMNS, row, strict=True))


def read_queue(shard, limit=None):
    query = f"SELECT {', '.join(QUEUE_COLUMNS)} FROM main._do_queue ORDER BY seq"
    if limit is not None:
        query += f" LIMIT {int(limit)}"
    return [dict(zip(QUEUE_COLUMNS, row, strict=True)) for row in shard.execute(query)]


def read_task(shard, seq):
    row = shard.execute(
        f"SELECT {', '.join(QUEUE_COLUMNS)} FROM main._do_queue WHERE seq = ?", (seq,)
    ).fetchone()
    return None if row is None else dict(zip(QUEUE_COLUMNS, row, strict=True))


def pop(shard, seq):
    """Delete the task; True if it was there."""
    return shard.execute("DELETE FROM main._do_queue WHERE seq = ?", (seq,)).rowcount > 0


def update_task(shard, seq, **values):
    sets = ", ".join(f"{name} = ?" for name in values)
    shard.execute(f"UPDATE main._do_queue SET {sets} WHERE seq = ?", (*values.values(), seq))


def clear(shard):
    """Delete every schedule and queued task (``delete_all()``); True if any existed."""
    removed = shard.execute("DELETE FROM main._do_schedules").rowcount
    removed += shard.execute("DELETE FROM main._do_queue").rowcount
    return removed > 0
