"""The chat room: one object per room, its messages in its own SQLite database."""

import time

from django.http import HttpResponse

from demo_site import protocol
from demo_site.limits import SocketRates
from durable_objects import DurableObject

MAX_TEXT = 500
MAX_USER = 32
HISTORY = 100  # messages a newcomer receives


class ChatRoom(DurableObject):
    class Meta:
        hibernate_after = 10

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec(
            "CREATE TABLE IF NOT EXISTS messages("
            " id INTEGER PRIMARY KEY, user TEXT NOT NULL, text TEXT NOT NULL, at REAL)"
        )
        self.rates = SocketRates(rate=3, burst=6)

    def fetch(self, request):
        """A client connects: accept it, remember its name, send it the last messages."""
        if not protocol.is_valid_name(self.ctx.id.name):
            return HttpResponse("No such room.", status=404)
        user = (request.GET.get("user") or "").strip()
        if not user or len(user) > MAX_USER or any(ord(c) < 32 for c in user):
            user = "anonymous"
        ws = request.websocket
        self.ctx.accept_websocket(ws)
        ws.serialize_attachment(user)
        rows = self.ctx.storage.sql.exec(
            "SELECT id, user, text, at FROM"
            " (SELECT * FROM messages ORDER BY id DESC LIMIT ?) ORDER BY id",
            HISTORY,
        ).to_array()
        protocol.send(ws, "history", messages=rows)
        return HttpResponse(status=101)

    def websocket_message(self, ws, message):
        try:
            data = protocol.parse(message, max_bytes=4 * MAX_TEXT + 100)
            if data["type"] != "message":
                raise protocol.Refused(f"Unknown message type {data['type'][:20]!r}.")
            text = protocol.text(data, "text", max_length=MAX_TEXT, label="message")
            if not self.rates.allow(ws):
                raise protocol.Refused(self.rates.message)
        except protocol.Refused as error:
            protocol.refuse(ws, error)
            return
        row = self.ctx.storage.sql.exec(
            "INSERT INTO messages(user, text, at) VALUES (?, ?, ?) RETURNING id, user, text, at",
            ws.deserialize_attachment(),
            text,
            time.time(),
        ).one()
        self.ctx.broadcast(protocol.dumps("message", **row))

    def websocket_close(self, ws, code, reason, was_clean):
        self.rates.forget(ws)
