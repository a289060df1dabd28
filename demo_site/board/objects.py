"""The shared drawing board: one object per board, its last 1,000 strokes in its SQLite."""

import json

from django.http import HttpResponse

from demo_site import protocol
from demo_site.limits import SocketRates
from durable_objects import DurableObject

from .strokes import MAX_POINTS, clean_stroke

KEPT = 1000  # strokes kept and replayed to newcomers
REPLAY_CHUNK = 100  # strokes per history message (each well under the 1 MiB limit)


class DrawingBoard(DurableObject):
    class Meta:
        hibernate_after = 10

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec(
            "CREATE TABLE IF NOT EXISTS strokes(id INTEGER PRIMARY KEY, stroke TEXT NOT NULL)"
        )
        # A page sends a long line as pieces of up to 64 points, about 15 a second.
        self.rates = SocketRates(rate=30, burst=60)

    def fetch(self, request):
        """A viewer connects: replay the kept strokes to it, oldest first, in chunks."""
        if not protocol.is_valid_name(self.ctx.id.name):
            return HttpResponse("No such board.", status=404)
        ws = request.websocket
        self.ctx.accept_websocket(ws)
        rows = self.ctx.storage.sql.exec("SELECT id, stroke FROM strokes ORDER BY id").raw()
        strokes = [{"id": row[0], **json.loads(row[1])} for row in rows]
        chunks = [strokes[i : i + REPLAY_CHUNK] for i in range(0, len(strokes), REPLAY_CHUNK)]
        for index, chunk in enumerate(chunks or [[]]):
            protocol.send(ws, "history", strokes=chunk, first=index == 0)
        return HttpResponse(status=101)

    def websocket_message(self, ws, message):
        try:
            data = protocol.parse(message, max_bytes=MAX_POINTS * 24 + 200)
            if data["type"] not in ("stroke", "clear"):
                raise protocol.Refused(f"Unknown message type {data['type'][:20]!r}.")
            stroke = clean_stroke(data) if data["type"] == "stroke" else None
            if not self.rates.allow(ws):
                raise protocol.Refused(self.rates.message)
        except protocol.Refused as error:
            protocol.refuse(ws, error)
            return
        if stroke is None:
            self.ctx.storage.sql.exec("DELETE FROM strokes")
            self.ctx.broadcast(protocol.dumps("clear"))
            return
        row = self.ctx.storage.sql.exec(
            "INSERT INTO strokes(stroke) VALUES (?) RETURNING id", json.dumps(stroke)
        ).one()
        self.ctx.storage.sql.exec("DELETE FROM strokes WHERE id <= ?", row["id"] - KEPT)
        self.ctx.broadcast(protocol.dumps("stroke", id=row["id"], **stroke))

    def websocket_close(self, ws, code, reason, was_clean):
        self.rates.forget(ws)
