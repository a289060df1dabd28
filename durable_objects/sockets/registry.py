"""An object's accepted sockets, kept in its shard so they outlive hibernation.

One row per socket in ``_do_sockets``: the consumer's channel, the process holding the
connection, the tags and the attachment. Rows change inside the running event, so an
accept, a close or an attachment commits (or rolls back) with the event's other writes.

``contains()``, asked at every message and every ``send()``, answers from memory for a
socket whose row it has seen committed (found by a transaction that had written nothing,
so the row predates it) and that no event has removed since; so a message to an object
that uses no storage opens no transaction. Only this registry writes the rows (user SQL
cannot reach ``_do_`` tables; an import resets the instance), and every removal drops
the socket from memory first: a rollback can only bring a row back, which costs a query.
"""

import json
import time

from durable_objects import serialization
from durable_objects.conf import get_config

from . import presence
from .protocol import MAX_ATTACHMENT_SIZE


class SocketRegistry:
    """The rows of one activation's sockets and the handles given out for them."""

    def __init__(self, activation):
        self.activation = activation
        self.handles = {}  # socket id -> WebSocket, so one socket is one handle
        self.failed = set()  # sockets whose websocket_message raised; later messages skip
        self.pending = {}  # socket id -> holder, for connect events running now
        self.present = set()  # sockets whose row is committed and not removed since
        self._swept = False
        self.rows_changed = False  # rows added or removed since the catalog last counted

    def _shard(self, create):
        shard = self.activation.shard_for_event(create=create)
        if shard is not None and not self._swept:
            self._swept = True
            self.rows_changed = True  # the catalog's count may be older than these rows
            self._sweep(shard)
        return shard

    def _sweep(self, shard):
        """Drop rows of sockets whose connection is gone (their process died or restarted).

        The object hears of each in a websocket_close(ws, 1006, ...) event of its own.
        """
        from .events import notify

        rows = shard.execute("SELECT id, channel, holder FROM main._do_sockets").fetchall()
        placement = self.activation.host.placement
        stale = [
            (sid, ch)
            for sid, ch, holder in rows
            if not presence.is_connected(holder, sid, placement)
        ]
        if not stale:
            return
        self.present.difference_update(sid for sid, _ in stale)
        shard.executemany(
            "DELETE FROM main._do_sockets WHERE id = ?", [(sid,) for sid, _ in stale]
        )
        for sid, channel in stale:
            self.activation.host.outbox.forget_socket(self.activation.hex, sid)
            self.handles.pop(sid, None)
            notify(
                self.activation,
                _Stale(sid, channel),
                "websocket_close",
                1006,
                "Connection lost",
                False,
            )

    def handle(self, socket_id, channel):
        from .handle import WebSocket

        ws = self.handles.get(socket_id)
        if ws is None:
            ws = self.handles[socket_id] = WebSocket(self.activation, socket_id, channel)
        return ws

    # -- rows ----------------------------------------------------------------------------

    def add(self, ws, tags, holder):
        shard = self._shard(create=True)
        count = shard.execute("SELECT count(*) FROM main._do_sockets").fetchone()[0]
        limit = get_config()["WEBSOCKET_MAX_PER_OBJECT"]
        if count >= limit:
            raise ValueError(f"This object already holds {count} sockets (limit {limit}).")
        shard.execute(
            "INSERT INTO main._do_sockets(id, channel, holder, tags, accepted_at) "
            "VALUES (?,?,?,?,?)",
            (ws.id, ws.channel, holder, json.dumps(tags), time.time()),
        )
        self.rows_changed = True

    def remove(self, socket_id):
        """Delete the socket's row; return True if it was there."""
        self.present.discard(socket_id)
        shard = self._shard(create=False)
        if shard is None:
            return False
        cursor = shard.execute("DELETE FROM main._do_sockets WHERE id = ?", (socket_id,))
        self.handles.pop(socket_id, None)
        self.rows_changed = self.rows_changed or cursor.rowcount > 0
        return cursor.rowcount > 0

    def forget(self, socket_id):
        """Everything about a socket that ended: its row, its numbering, its failure mark.

        Returns True if its row was there.
        """
        self.failed.discard(socket_id)
        self.activation.host.outbox.forget_socket(self.activation.hex, socket_id)
        return self.remove(socket_id)

    def contains(self, socket_id):
        activation = self.activation
        if socket_id in self.present and not activation.closed and activation.restored is None:
            return True
        shard = self._shard(create=False)
        if shard is None:
            return False
        row = shard.execute("SELECT 1 FROM main._do_sockets WHERE id = ?", (socket_id,)).fetchone()
        if row is not None and not shard.dirty:  # nothing written yet: the row is committed
            self.present.add(socket_id)
        return row is not None

    def websockets(self, tag=None):
        shard = self._shard(create=False)
        if shard is None:
            return []
        rows = shard.execute(
            "SELECT id, channel, tags FROM main._do_sockets ORDER BY accepted_at, id"
        ).fetchall()
        return [
            self.handle(sid, channel)
            for sid, channel, tags in rows
            if tag is None or tag in json.loads(tags)
        ]

    def tags(self, socket_id):
        row = self._row(socket_id, "tags")
        return json.loads(row) if row is not None else []

    def attachment(self, socket_id):
        data = self._row(socket_id, "attachment")
        return None if data is None else serialization.loads(data)

    def set_attachment(self, socket_id, value):
        try:
            data = serialization.dumps(value)
        except TypeError as exc:
            raise TypeError(f"The attachment is not serializable: {exc}") from None
        if len(data) > MAX_ATTACHMENT_SIZE:
            raise ValueError(
                f"The attachment is {len(data)} bytes serialized; the limit is "
                f"{MAX_ATTACHMENT_SIZE}."
            )
        shard = self._shard(create=True)
        cursor = shard.execute(
            "UPDATE main._do_sockets SET attachment = ? WHERE id = ?", (data, socket_id)
        )
        if cursor.rowcount == 0:
            raise ValueError("This socket is closed or was never accepted.")

    def _row(self, socket_id, column):
        shard = self._shard(create=False)
        if shard is None:
            return None
        row = shard.execute(
            f"SELECT {column} FROM main._do_sockets WHERE id = ?", (socket_id,)
        ).fetchone()
        return None if row is None else row[0]


class _Stale:
    """What notify() needs to know of a swept socket."""

    def __init__(self, socket_id, channel):
        self.socket_id, self.channel, self.name = socket_id, channel, None
