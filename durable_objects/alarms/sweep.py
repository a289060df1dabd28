"""Finding every pending alarm: the catalog, and the shards written since it was flushed.

An object's pending alarm is its wake time: its own alarm, its next schedule or its
queue's head, whichever is earliest.

The shard is the truth about an alarm; the catalog's ``alarm_at`` is its copy, written
off the hot path. A process killed between a commit and the next catalog flush leaves
the catalog behind, so a sweep also reads the alarm row of each shard whose file changed
after its catalog row was written (or that has no row). ``scan="all"`` reads every shard.
"""

import logging
import sqlite3
from contextlib import suppress
from datetime import UTC, datetime

from durable_objects.conf import get_config
from durable_objects.storage.files import open_read_only, shard_files
from durable_objects.storage.schedules import WAKE_QUERY, earliest

logger = logging.getLogger("durable_objects.alarms")

# A shard modified this many seconds before its catalog row's last activity is re-read.
CLOCK_SLACK = 5.0


def pending_alarms(scan="changed", fix_catalog=False):
    """Return {(label, hex): due UNIX seconds} for every object with an alarm pending."""
    from django.db import DatabaseError

    from durable_objects.models import ObjectRecord

    catalog = {}
    alarms = {}
    try:
        for label, hex_id, alarm_at, last_active in ObjectRecord.objects.values_list(
            "label", "object_id", "alarm_at", "last_active_at"
        ).iterator(chunk_size=5000):
            catalog[(label, hex_id)] = (alarm_at, last_active.timestamp())
            if alarm_at is not None:
                alarms[(label, hex_id)] = alarm_at.timestamp()
    except DatabaseError as exc:  # not migrated: the shards alone tell
        logger.info("The catalog cannot be read (%s); reading every shard.", exc)
        scan, fix_catalog = "all", False
    if scan == "none":
        return alarms
    corrections = {}
    root = get_config()["STORAGE_ROOT"]
    for label, hex_id, path in shard_files(root):
        key = (label, hex_id)
        known = catalog.get(key)
        if scan != "all" and known is not None and _modified(path) < known[1] - CLOCK_SLACK:
            continue
        found, due = read_due(path)
        if not found:
            continue
        if due is None:
            alarms.pop(key, None)
        else:
            alarms[key] = due
        if known is not None and (known[0] is None) != (due is None):
            corrections[key] = due
    if fix_catalog:
        for (label, hex_id), due in corrections.items():
            ObjectRecord.objects.filter(label=label, object_id=hex_id).update(
                alarm_at=None if due is None else datetime.fromtimestamp(due, UTC)
            )
    return alarms


def read_due(path):
    """(True, due or None) from a shard's alarm row, read-only; (False, None) if unreadable."""
    try:
        conn = open_read_only(path, timeout=2.0)
    except sqlite3.Error:
        return False, None
    try:
        try:  # the alarm, the next schedule and the queue's head (storage/schedules.py)
            return True, earliest(conn.execute(WAKE_QUERY).fetchone())
        except sqlite3.Error:  # a shard from before schedules, not opened since
            row = conn.execute("SELECT due_at FROM _do_alarm WHERE id = 1").fetchone()
    except sqlite3.Error:  # an older shard without the table, or not a shard
        return True, None
    finally:
        conn.close()
    return True, (row[0] if row else None)


def _modified(path):
    newest = 0.0
    for suffix in ("", "-wal"):
        with suppress(FileNotFoundError):
            newest = max(newest, path.with_name(path.name + suffix).stat().st_mtime)
    return newest
