"""The chat room: one object per room, its messages in its own SQLite database."""

import json

from durable_objects import DurableObject

MAX_TEXT = 500
MAX_NAME = 32


class ChatRoom(DurableObject):
    class Meta:
        hibernate_after = 10

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec(
            "CREATE TABLE IF NOT EXISTS messages("
            " id INTEGER PRIMARY KEY, user TEXT NOT NULL, text TEXT NOT NULL)"
        )

    def fetch(self, request):
        """A client connects: accept it, remember its name, send it the last 100 messages."""
        user = (request.GET.get("user") or "").strip()[:MAX_NAME] or "anonymous"
        ws = request.websocket
        self.ctx.accept_websocket(ws)
        ws.serialize_attachment(user)
        rows = self.ctx.storage.sql.exec(
            "SELECT user, text FROM (SELECT * FROM messages ORDER BY id DESC LIMIT 100)"
            " ORDER BY id"
        )
        for row in rows:
            ws.send(json.dumps(row))

    def websocket_message(self, ws, message):
        if not isinstance(message, str):
            return
        text = message.strip()[:MAX_TEXT]
        if not text:
            return
        row = self.ctx.storage.sql.exec(
            "INSERT INTO messages(user, text) VALUES (?, ?) RETURNING user, text",
            ws.deserialize_attachment(),
            text,
        ).one()
        self.ctx.broadcast(json.dumps(row))
