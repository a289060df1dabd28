"""Object classes for the WebSocket tests (imported by tests/asgi.py and the tests)."""

import asyncio
import json
import time

from django.http import HttpResponse

from durable_objects import DurableObject


class Room(DurableObject):
    """A chat room: history in SQLite, every message broadcast to every socket."""

    class Meta:
        hibernate_after = 0.3

    constructions = 0

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        type(self).constructions += 1
        ctx.storage.sql.exec(
            "CREATE TABLE IF NOT EXISTS messages(id INTEGER PRIMARY KEY, user TEXT, text TEXT)"
        )

    def fetch(self, request):
        query = request.GET
        if query.get("refuse"):
            return HttpResponse("go away", status=int(query["refuse"]))
        if query.get("explode"):
            raise RuntimeError("the door is stuck")
        tags = query.getlist("tag")
        self.ctx.accept_websocket(request.websocket, tags)
        user = query.get("user") or request.user.username or "anon"
        request.websocket.serialize_attachment({"user": user, "since": time.time()})
        for row in self.ctx.storage.sql.exec("SELECT user, text FROM messages ORDER BY id"):
            request.websocket.send(json.dumps(row))
        return HttpResponse(status=101)

    def websocket_message(self, ws, message):
        if isinstance(message, bytes):
            ws.send(message[::-1])  # bytes echo back reversed, to this socket only
            return
        if message.startswith("/"):
            return self.command(ws, message)
        user = ws.deserialize_attachment()["user"]
        row = self.ctx.storage.sql.exec(
            "INSERT INTO messages(user, text) VALUES (?, ?) RETURNING user, text", user, message
        ).one()
        self.ctx.broadcast(json.dumps(row))

    def command(self, ws, message):
        verb, _, arg = message.partition(" ")
        if verb == "/boom":
            self.ctx.storage.sql.exec("INSERT INTO messages(user, text) VALUES ('x', 'boom')")
            ws.send("this is never sent")
            raise ValueError("boom: " + arg)
        if verb == "/whoami":
            ws.send(
                json.dumps(
                    {"attachment": ws.deserialize_attachment(), "tags": self.ctx.get_tags(ws)}
                )
            )
        elif verb == "/count":
            ws.send(str(len(self.ctx.get_websockets(arg or None))))
        elif verb == "/tag":
            tag, _, text = arg.partition(" ")
            self.ctx.broadcast(text, tag=tag)
        elif verb == "/others":
            self.ctx.broadcast(arg, exclude=[ws])
        elif verb == "/close":
            ws.close(4001, "asked to leave")
        elif verb == "/auto":
            request, _, response = arg.partition(" ")
            self.ctx.set_websocket_auto_response(request, response)
        elif verb == "/autots":
            ws.send(json.dumps(self.ctx.get_websocket_auto_response_timestamp(ws)))
        elif verb == "/built":
            ws.send(str(type(self).constructions))
        elif verb == "/records":
            ws.send(json.dumps(self.ctx.storage.list(prefix=arg)))
        elif verb == "/echo":
            ws.send(arg)
        elif verb == "/shout":
            self.ctx.broadcast(arg)
        elif verb == "/layer":
            from channels.layers import get_channel_layer

            ws.send(json.dumps(dict(getattr(get_channel_layer(), "carried", {}))))
        elif verb == "/flood":
            count, _, size = arg.partition(" ")
            for i in range(int(count)):
                self.ctx.broadcast(f"{i:08d}" + "x" * int(size or 0))

    def websocket_close(self, ws, code, reason, was_clean):
        self.ctx.storage.put(f"closed:{ws.id}", [code, reason, was_clean])

    def websocket_error(self, ws, error):
        self.ctx.storage.put(f"error:{ws.id}", f"{type(error).__name__}: {error}")

    def say(self, text):
        """A method call that broadcasts (stubs and sockets together)."""
        self.ctx.storage.sql.exec("INSERT INTO messages(user, text) VALUES ('stub', ?)", text)
        self.ctx.broadcast(json.dumps({"user": "stub", "text": text}))
        return len(self.ctx.get_websockets())

    def records(self, prefix):
        return self.ctx.storage.list(prefix=prefix)

    def close_all_then_fail(self):
        """Close every socket, then raise: the event rolls back and the sockets stay."""
        for ws in self.ctx.get_websockets():
            ws.close(4002, "never sent")
        raise ValueError("changed my mind")

    def history(self):
        return self.ctx.storage.sql.exec("SELECT user, text FROM messages ORDER BY id").to_array()


class Open(DurableObject):
    """No fetch(): every socket is accepted without tags; echoes text, naps on request."""

    closes = []  # (code, was_clean) of each websocket_close() call, failed ones too

    async def websocket_message(self, ws, message):
        if message.startswith("nap "):
            await asyncio.sleep(float(message[4:]))
        ws.send(message)

    def websocket_close(self, ws, code, reason, was_clean):
        type(self).closes.append((code, was_clean))
        self.ctx.storage.put("last-close", code)
        if code == 4999:
            raise RuntimeError("a close handler that fails")

    def count(self):
        return len(self.ctx.get_websockets())

    def last_close(self):
        return self.ctx.storage.get("last-close")
