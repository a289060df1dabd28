"""Writes the catalog (``ObjectRecord`` rows) off the hot path, in batches, on a thread."""

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from durable_objects.conf import get_config
from durable_objects.storage.shard import file_size

logger = logging.getLogger("durable_objects.catalog")
UNKNOWN = object()  # the activation's alarm_due before it opened the shard
MAX_ROW_FAILURES = 3  # flushes that may refuse one row before it is set aside


def _aware(seconds):
    """A UTC datetime for UNIX seconds, clamped to what a DateTimeField can hold."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.fromtimestamp(0, UTC) if seconds < 0 else datetime.max.replace(tzinfo=UTC)


class CatalogWriter:
    """Collects which objects have storage and when they were last active; flushes them."""

    def __init__(self, host):
        self.host = host
        self.pending = {}
        self.guard = threading.Lock()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="durable-objects-catalog")
        self.flushing = None
        self.last_flush = time.monotonic()
        self.failed = False
        self.row_failures = {}  # key -> flushes in a row that refused its record
        self.set_aside = {}  # key -> record refused MAX_ROW_FAILURES times, not retried

    def touch(self, activation, created=False):
        """Note that the object has storage and was active now (a dict write, no I/O)."""
        if activation.shard is None and not activation.path.exists():
            return
        now = time.time()
        alarm_due = activation.alarm_due  # UNKNOWN if this activation never opened the shard
        sockets = _socket_count(activation)
        with self.guard:
            record = self.pending.get(activation.key)
            if record is None:
                self.pending[activation.key] = {
                    "label": activation.key[0],
                    "object_id": activation.key[1],
                    "name": activation.id.name,
                    "path": activation.path,
                    "created_at": activation.created_at or now,
                    "last_active_at": now,
                    "alarm_due": alarm_due,
                    "socket_count": sockets,
                }
            else:
                record["last_active_at"] = now
                record["name"] = record["name"] or activation.id.name
                if alarm_due is not UNKNOWN:
                    record["alarm_due"] = alarm_due
                if sockets is not None:
                    record["socket_count"] = sockets

    def pending_for(self, label):
        with self.guard:
            return [
                (r["object_id"], r["name"]) for r in self.pending.values() if r["label"] == label
            ]

    def maybe_flush(self, now):
        if not self.pending or now - self.last_flush < get_config()["CATALOG_FLUSH_INTERVAL"]:
            return
        if self.flushing is not None and not self.flushing.done():
            return
        self.last_flush = now
        batch = self._take()
        self.flushing = self.executor.submit(self._write, batch)

    def flush_sync(self):
        """Write everything pending now and wait for it."""
        if self.flushing is not None:
            self.flushing.result()
        batch = self._take()
        if not batch:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._write(batch, own_thread=False)  # no loop here: the ORM may run in this thread
        else:
            self.executor.submit(self._write, batch).result()

    def _take(self):
        with self.guard:
            batch, self.pending = self.pending, {}
        return batch

    def _write(self, batch, own_thread=True):
        from django.db import (
            DatabaseError,
            InterfaceError,
            OperationalError,
            ProgrammingError,
            connection,
        )

        try:
            _save(batch)
            self.failed = False
        except (DatabaseError, ValueError) as exc:
            if isinstance(exc, OperationalError | InterfaceError | ProgrammingError):
                self._keep_for_later(batch, exc)
            else:
                # A row the database refuses (a NUL in a name on PostgreSQL): write the
                # rows one by one, so that one bad row does not hold up every later one.
                self._write_one_by_one(batch)
        except Exception as exc:
            self._keep_for_later(batch, exc)
        finally:
            if own_thread:  # the catalog thread's connection; never the caller's
                connection.close()

    def _keep_for_later(self, batch, exc):
        # Not migrated yet, or the database is down: keep the rows for the next flush
        # and say so once, not at every tick.
        log = logger.debug if self.failed else logger.warning
        log("Writing %d catalog rows failed (%s); retrying later.", len(batch), exc)
        self.failed = True
        self._keep(batch)

    def _write_one_by_one(self, batch):
        from django.db import DatabaseError, transaction

        kept = {}
        for key, record in batch.items():
            try:
                with transaction.atomic():
                    _save({key: record})
            except (DatabaseError, ValueError) as exc:
                failures = self.row_failures.get(key, 0) + 1
                if failures < MAX_ROW_FAILURES:
                    self.row_failures[key] = failures
                    kept[key] = record
                    continue
                self.row_failures.pop(key, None)
                self.set_aside[key] = record
                logger.error(
                    "The catalog row of %s %s was refused %d times (%s); it is set aside "
                    "(rebuild_catalog writes it again once the cause is fixed).",
                    key[0],
                    key[1],
                    failures,
                    exc,
                )
            else:
                self.row_failures.pop(key, None)
        self._keep(kept)

    def _keep(self, batch):
        with self.guard:
            for key, record in batch.items():
                self.pending.setdefault(key, record)


def _save(batch):
    """Upsert the batch's ObjectRecord rows."""
    from durable_objects.models import ObjectRecord

    # Rows whose alarm (socket count) this host knows update alarm_at (socket_count);
    # the others leave it as it is.
    rows = {}
    for record in batch.values():
        alarm_due = record["alarm_due"]
        known = alarm_due is not UNKNOWN
        sockets = record.get("socket_count")
        rows.setdefault((known, sockets is not None), []).append(
            ObjectRecord(
                label=record["label"],
                object_id=record["object_id"],
                name=record["name"],
                created_at=datetime.fromtimestamp(record["created_at"], UTC),
                last_active_at=datetime.fromtimestamp(record["last_active_at"], UTC),
                size_bytes=file_size(record["path"]),
                alarm_at=None if not known or alarm_due is None else _aware(alarm_due),
                socket_count=sockets or 0,
            )
        )
    for (known, sockets_known), group in rows.items():
        ObjectRecord.objects.bulk_create(
            group,
            update_conflicts=True,
            unique_fields=["label", "object_id"],
            update_fields=["name", "last_active_at", "size_bytes"]
            + (["alarm_at"] if known else [])
            + (["socket_count"] if sockets_known else []),
        )


def _socket_count(activation):
    """The object's accepted sockets, or None if they did not change since the last count.

    Rows change only through the socket registry, which notes it, and each change
    commits, which touches the catalog with the shard open: so a commit that only wrote
    (a chat message) costs no count.
    """
    registry, shard = activation.sockets, activation.shard
    if not registry.rows_changed or shard is None or not shard.is_open:
        return None
    registry.rows_changed = False
    return shard.execute("SELECT count(*) FROM main._do_sockets").fetchone()[0]
