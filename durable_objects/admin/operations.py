"""The admin's operations: looking into one object and changing it, as its events.

Each operation runs as an ``AdminOperation`` event: queued behind the object's other
events, inside its transaction, committed with the epoch fence, and sent over the wire
(the kind registers itself when Django's admin autodiscovery imports this package) so
that it reaches the object in whichever process of a cluster holds it. Results are plain
data (msgpack-serializable), never live Python objects of the instance.
"""

import asyncio
import functools
import json
import math
import sqlite3
import time

from durable_objects import serialization
from durable_objects.conf import get_config
from durable_objects.events.base import Event, WireField, current_event, wire_limit
from durable_objects.runtime.lifecycle import current_host
from durable_objects.runtime.schedules import describe, describe_task
from durable_objects.storage import schedules as schedule_rows
from durable_objects.storage.kv import prefix_conditions

from .console import run_read_only

PREVIEW_LENGTH = 200  # characters of a value shown in a listing
MAX_VALUE_DISPLAY = 2 * 1024 * 1024  # characters of one value shown whole
SCHEDULES_SHOWN = 100  # schedules, and queued tasks, listed on the detail page

_operations = {}


def operation(fn):
    """Make fn(instance, ctx, **args) an operation the admin can run in an object."""
    _operations[fn.__name__] = fn
    return fn


class AdminOperation(Event):
    """One admin operation (``_operations``) run inside the object, as one event."""

    __slots__ = ("args", "op")

    kind = "admin_operation"
    wire_fields = {
        "op": WireField(str, max_size=100),
        # Keyword arguments of the operation: their types are the operation's to check.
        "args": WireField(dict, None, required=False, max_size=wire_limit("MAX_CALL_SIZE")),
    }

    def __init__(self, op, args=None, **kwargs):
        super().__init__(**kwargs)
        if op not in _operations:
            raise ValueError(f"Unknown admin operation {op!r}.")
        self.op = op
        self.args = dict(args or {})
        if not all(isinstance(key, str) for key in self.args):
            raise ValueError(f"The arguments of the admin operation {op!r} need text names.")

    def to_wire(self):
        return {"op": self.op, "args": self.args}

    @property
    def force_after(self):
        """Seconds the evict may wait in the queue before the object counts as stuck.

        The activation resets a stuck object then (``Host.evict(force=True)``), as its
        running event holds up every event behind it, the evict included.
        """
        if self.op == "evict":
            return get_config()["CALL_TIMEOUT"]
        return None

    def invoke(self, instance, activation):
        return _operations[self.op](instance, instance.ctx, **self.args)

    def __repr__(self):
        return f"<AdminOperation {self.op}>"


# -- values as text ----------------------------------------------------------------------


def _exact_json(value):
    """True if json.dumps() then json.loads() gives value back unchanged (types included)."""
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_exact_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _exact_json(v) for k, v in value.items())
    return False


def render_value(value):
    """A stored value as text: JSON where JSON holds it exactly, else Python's repr()."""
    if _exact_json(value):
        return json.dumps(value, ensure_ascii=False), True
    return repr(value), False


def _entry(key, value, size):
    text, editable = render_value(value)
    return {
        "key": key,
        "preview": text[:PREVIEW_LENGTH],
        "truncated": len(text) > PREVIEW_LENGTH,
        "length": len(text),
        "size": size,
        "type": type(value).__name__,
        "editable": editable,
    }


# -- reads -------------------------------------------------------------------------------


def _shard(ctx):
    """The object's shard for reading, or None if it has never written anything."""
    # The running event's activation, as alarms/events.py finds it; its shard is the one
    # ctx.storage uses, in this event's transaction.
    activation, _ = current_event.get()
    return activation.shard_for_event(create=False)


@operation
def overview(instance, ctx, kv_after=None, kv_limit=50, kv_prefix=None):
    """Everything the detail page shows: a page of entries, tables, alarm, sockets."""
    shard = _shard(ctx)
    result = {
        "kv_count": 0,
        "kv": [],
        "kv_next": None,
        "tables": [],
        "alarm": alarm_of(ctx),
        "schedules": schedules_of(ctx),
        "sockets": sockets_of(ctx),
        "database_size": 0,
        "checked_at": time.time(),
    }
    if shard is None:
        return result
    result["database_size"] = shard.database_size()
    result["kv_count"] = shard.execute("SELECT count(*) FROM main._do_kv").fetchone()[0]
    clauses, params = [], []
    if kv_after is not None:
        clauses.append("key > ?")
        params.append(kv_after)
    if kv_prefix:
        for condition, param in prefix_conditions(kv_prefix):  # as storage.list(prefix=)
            clauses.append(condition)
            params.append(param)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = shard.execute(
        f"SELECT key, value FROM main._do_kv {where} ORDER BY key LIMIT ?", (*params, kv_limit + 1)
    ).fetchall()
    entries = [_entry(k, serialization.loads(v), len(v)) for k, v in rows[:kv_limit]]
    result["kv"] = entries
    if len(rows) > kv_limit:
        result["kv_next"] = entries[-1]["key"]
    result["tables"] = tables_of(ctx)
    return result


def tables_of(ctx):
    """The object's own tables and views (never the internal ``_do_`` ones)."""
    rows = ctx.storage.sql.exec(
        "SELECT type, name, sql FROM sqlite_schema WHERE type IN ('table', 'view') "
        "AND name NOT LIKE '\\_do\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
        "ORDER BY name"
    ).to_array()
    for row in rows:
        try:
            count = ctx.storage.sql.exec(f"SELECT count(*) AS n FROM {_quote(row['name'])}")
            row["rows"] = count.one()["n"]
        except sqlite3.Error:  # a view whose tables are gone, say: list it all the same
            row["rows"] = None
    return rows


def _quote(name):
    return '"' + name.replace('"', '""') + '"'


def alarm_of(ctx):
    """The alarm row (time, retries, last failure) as a dict, or None if never set."""
    from durable_objects.alarms.state import alarm_status

    status = alarm_status(ctx)
    return None if status is None else dict(status)


def schedules_of(ctx, limit=SCHEDULES_SHOWN):
    """The first schedules (the next due first) and queued tasks, and how many of each."""
    shard = _shard(ctx)
    if shard is None:
        return {"count": 0, "rows": [], "queue_count": 0, "queue": []}
    listed = [describe(row) for row in schedule_rows.read_all(shard, limit)]
    queue = [describe_task(row) for row in schedule_rows.read_queue(shard, limit)]
    for entry in (*listed, *queue):
        entry["args"] = render_value(entry["args"])[0][:PREVIEW_LENGTH]
    return {
        "count": schedule_rows.count(shard),
        "rows": listed,
        "queue_count": schedule_rows.queue_length(shard),
        "queue": queue,
    }


def sockets_of(ctx):
    """The object's accepted sockets: id, tags, attachment (as text), accepted time."""
    handles = ctx.get_websockets()  # drops rows of sockets whose connection is gone first
    shard = _shard(ctx)
    accepted = {}
    if shard is not None and handles:
        accepted = dict(shard.execute("SELECT id, accepted_at FROM main._do_sockets").fetchall())
    sockets = []
    for ws in handles:
        attachment = ws.deserialize_attachment()
        sockets.append(
            {
                "id": ws.id,
                "tags": ctx.get_tags(ws),
                "attachment": None if attachment is None else render_value(attachment)[0],
                "accepted_at": accepted.get(ws.id),
            }
        )
    return sockets


@operation
def kv_value(instance, ctx, key):
    """One entry whole: its text, whether it is editable as JSON, its type."""
    shard = _shard(ctx)
    row = None
    if shard is not None:
        row = shard.execute("SELECT value FROM main._do_kv WHERE key = ?", (key,)).fetchone()
    if row is None:
        return {"key": key, "found": False}
    value = serialization.loads(row[0])
    text, editable = render_value(value)
    return {
        "key": key,
        "found": True,
        "text": text[:MAX_VALUE_DISPLAY],
        "truncated": len(text) > MAX_VALUE_DISPLAY,
        "editable": editable,
        "type": type(value).__name__,
        "size": len(row[0]),
    }


@operation
def table_rows(instance, ctx, table, offset=0, limit=50):
    """A page of one table's rows, with its schema; values rendered as text."""
    shard = _shard(ctx)
    known = {t["name"]: t for t in tables_of(ctx)} if shard is not None else {}
    if table not in known:
        raise LookupError(f"The object has no table or view named {table!r}.")
    info = known[table]
    cursor = ctx.storage.sql.exec(
        f"SELECT * FROM {_quote(table)} LIMIT ? OFFSET ?", int(limit), int(offset)
    )
    columns = ctx.storage.sql.exec(f"PRAGMA table_xinfo({_quote(table)})").to_array()
    return {
        "name": table,
        "type": info["type"],
        "sql": info["sql"],
        "count": info["rows"],
        "columns": cursor.column_names,
        "schema": [
            {k: c[k] for k in ("name", "type", "notnull", "dflt_value", "pk")} for c in columns
        ],
        "rows": [[_cell(v) for v in row] for row in cursor.raw()],
        "offset": int(offset),
    }


def _cell(value):
    if isinstance(value, bytes):
        return f"<{len(value)} bytes> {value[:64].hex()}" + ("…" if len(value) > 64 else "")
    if isinstance(value, str) and len(value) > PREVIEW_LENGTH * 5:
        return value[: PREVIEW_LENGTH * 5] + "…"
    return value


@operation
async def console(instance, ctx, sql, max_rows=500):
    """Run sql on a read-only connection of its own to the object's file, on a thread.

    The object's other events wait their turn as for any event; the host's other
    objects do not, since the statement does not run on the event loop.
    """
    shard = _shard(ctx)
    if shard is None:
        raise LookupError("The object has no storage yet.")
    query = functools.partial(run_read_only, shard.path, sql, max_rows=max_rows)
    result = await asyncio.get_running_loop().run_in_executor(None, query)
    result["rows"] = [[_cell(v) for v in row] for row in result["rows"]]
    return result


# -- changes -----------------------------------------------------------------------------


@operation
def kv_put(instance, ctx, key, value):
    """Store value under key; return True if the key existed before."""
    existed = ctx.storage.get(key, _MISSING) is not _MISSING
    ctx.storage.put(key, value)
    return existed


_MISSING = object()


@operation
def kv_delete(instance, ctx, key):
    """Delete key; return True if it existed."""
    return ctx.storage.delete(key)


@operation
def cancel_alarm(instance, ctx):
    """Delete the alarm; return the time it was set for (UNIX seconds) or None."""
    when = ctx.storage.get_alarm()
    ctx.storage.delete_alarm()
    return when


@operation
def cancel_schedule(instance, ctx, schedule_id):
    """Cancel the schedule; return its method's name, or None if there was none."""
    found = ctx.get_schedule(schedule_id)
    ctx.cancel_schedule(schedule_id)
    return None if found is None else found["method"]


@operation
def drop_task(instance, ctx, seq):
    """Drop the queued task; return its method's name, or None if it was not queued."""
    activation, _ = current_event.get()
    shard = activation.shard_for_event(create=False)
    task = None if shard is None else schedule_rows.read_task(shard, int(seq))
    if task is None:
        return None
    schedule_rows.pop(shard, task["seq"])
    activation.alarm_changed = True
    return task["method"]


@operation
def delete_storage(instance, ctx):
    """Delete every entry, table and view, and the alarm; return what there was."""
    shard = _shard(ctx)
    if shard is None:
        return {"entries": 0, "tables": 0}
    entries = shard.execute("SELECT count(*) FROM main._do_kv").fetchone()[0]
    tables = len(tables_of(ctx))
    ctx.storage.delete_all()
    if ctx.storage.get_alarm() is not None:
        ctx.storage.delete_alarm()
    return {"entries": entries, "tables": tables}


@operation
def evict(instance, ctx):
    """Drop the instance from memory once this event and the queued ones are done.

    If this event is still queued after CALL_TIMEOUT (see ``AdminOperation.force_after``),
    the object is stuck: it is reset instead, without waiting for its running event.
    """
    host = current_host()
    task = host.loop.create_task(_evict_when_idle(host, ctx.id.key))
    _evictions.add(task)
    task.add_done_callback(_evictions.discard)
    return True


_evictions = set()


async def _evict_when_idle(host, key):
    await asyncio.sleep(0)  # let this event's commit deliver first
    # The host's own eviction: waits until idle, notes the catalog, gives a lease back.
    await host.evict([key])
