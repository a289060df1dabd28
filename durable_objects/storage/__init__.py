"""``ctx.storage``: the object's SQLite shard through the SQL and key-value APIs."""

from contextlib import contextmanager

from . import schedules
from .alarm import AlarmMixin
from .kv import KeyValueMixin
from .sql import SqlStorage

__all__ = ["DurableObjectStorage"]


class DurableObjectStorage(KeyValueMixin, AlarmMixin):
    """Synchronous access to one object's database, inside the current event's transaction.

    The shard is opened on first use; an object that never touches storage has no file.
    """

    def __init__(self, activation):
        self._activation = activation
        self.sql = SqlStorage(self)

    def _shard(self):
        return self._activation.shard_for_event()

    def _existing_shard(self):
        """The shard for a read, or None if the object has never written anything."""
        return self._activation.shard_for_event(create=False)

    @contextmanager
    def atomic(self):
        """All or nothing: a savepoint that nests, rolled back on any exception."""
        with self._shard().savepoint():
            yield

    def transaction_sync(self, fn):
        """Run fn() atomically and return its result."""
        with self.atomic():
            return fn()

    def delete_all(self):
        """Delete every key-value entry, every table, view, index and trigger, the alarm,
        the schedules and the queue."""
        shard = self._shard()
        with shard.savepoint():
            shard.execute("DELETE FROM main._do_kv")
            self.delete_alarm()
            if schedules.clear(shard):
                self._activation.alarm_changed = True
            objects = shard.execute(
                "SELECT type, name FROM sqlite_schema WHERE name NOT LIKE '\\_do\\_%' ESCAPE '\\' "
                "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND type IN ('view', 'table') "
                "ORDER BY type = 'table'"
            ).fetchall()
            for kind, name in objects:
                quoted = '"' + name.replace('"', '""') + '"'
                shard.execute(f"DROP {kind.upper()} IF EXISTS main.{quoted}")
            shard.authorizer.wrote_schema = True
