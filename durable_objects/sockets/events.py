"""Socket events: a connect, a message, a close and a failed message, as plain data.

They go through the object's queue like calls, one at a time in arrival order, so a
socket's messages reach ``websocket_message`` in the order the client sent them.
"""

import inspect

from durable_objects.events.base import Event, WireField, check_encoded_error, wire_limit
from durable_objects.events.calls import check_request

from . import presence
from .protocol import CLOSE_NOT_ACCEPTED, truncate_reason


async def _maybe_await(result):
    if inspect.isawaitable(result):
        result = await result
    return result


def upgrade_request(scope):
    """The upgrade request of a WebSocket scope as plain data (``http.decode_request``).

    As in ``http.encode_request``: the path is text (the server decoded it as UTF-8), the
    query string is ASCII (bytes beyond it percent-encoded, as a browser sends them) and
    header values are latin-1, as HTTP and Django have them.
    """
    from durable_objects.http import ascii_query

    headers = {}
    for name, value in scope.get("headers", ()):
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return {
        "method": "GET",
        "path": scope.get("path") or "/",
        "query": ascii_query(scope.get("query_string", b"")),
        "headers": headers,
        "body": b"",
    }


def user_snapshot(scope):
    """What the object learns of ``scope["user"]``: plain data, or None if anonymous."""
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return {
        "pk": user.pk,
        "username": user.get_username(),
        "is_authenticated": True,
        "is_staff": bool(getattr(user, "is_staff", False)),
        "is_superuser": bool(getattr(user, "is_superuser", False)),
        "is_active": bool(getattr(user, "is_active", True)),
    }


_USER_FIELDS = {
    "pk": (int, str, type(None)),
    "username": (str,),
    "is_authenticated": (bool,),
    "is_staff": (bool,),
    "is_superuser": (bool,),
    "is_active": (bool,),
}


def _check_user(data):
    """Refuse a user snapshot that is not what ``user_snapshot()`` makes."""
    for key, value in data.items():
        types = _USER_FIELDS.get(key)
        if types is None:
            raise ValueError(f"has an unknown key {str(key)[:100]!r}")
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ValueError(f"has a {key!r} of type {type(value).__name__}")
        if isinstance(value, str) and len(value) > 1024:
            raise ValueError(f"has a {key!r} over 1024 characters")


def _check_route(data):
    """Refuse URL route keyword arguments that are not text keys with scalar values."""
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str | int | float | bool | None):
            raise ValueError("must map str to str, int, float, bool or None")
        if isinstance(value, str) and len(value) > 4096:
            raise ValueError(f"has a value for {key[:100]!r} over 4096 characters")


def _check_close_code(code):
    if not 1000 <= code <= 4999:
        raise ValueError(f"{code} is not a WebSocket close code (1000-4999)")


class SocketUser:
    """``request.user`` on a WebSocket connect: a snapshot of the user in the scope."""

    def __init__(self, data):
        data = data or {}
        self.pk = self.id = data.get("pk")
        self.username = data.get("username", "")
        self.is_authenticated = bool(data.get("is_authenticated"))
        self.is_anonymous = not self.is_authenticated
        self.is_staff = bool(data.get("is_staff"))
        self.is_superuser = bool(data.get("is_superuser"))
        self.is_active = bool(data.get("is_active", self.is_authenticated))

    def get_username(self):
        return self.username

    def __str__(self):
        return self.username or "AnonymousUser"

    def __repr__(self):
        return f"<SocketUser {self}>"


class SocketEvent(Event):
    """An event of one socket. It has no CALL_TIMEOUT: it runs in its turn, however late."""

    __slots__ = ("channel", "socket_id")

    timed = False
    wire_fields = {"socket_id": WireField(str, max_size=64), "channel": WireField(str)}

    def __init__(self, socket_id, channel, **kwargs):
        super().__init__(**kwargs)
        self.socket_id = socket_id
        self.channel = channel

    def encode_error(self, exc):
        from durable_objects.events.errors import encode_exception

        return encode_exception(exc)

    def to_wire(self):
        """The keyword arguments that rebuild this event in another process."""
        fields = {"socket_id": self.socket_id, "channel": self.channel}
        for cls in type(self).__mro__:
            if cls is SocketEvent:
                break
            for slot in cls.__dict__.get("__slots__", ()):
                fields[slot] = getattr(self, slot)
        return fields


class SocketConnect(SocketEvent):
    """A client asks to connect: the object's fetch() sees the upgrade request."""

    __slots__ = ("holder", "request", "route", "user")

    kind = "socket_connect"
    timed = True  # the client waits on its handshake: CALL_TIMEOUT applies
    wire_fields = {
        **SocketEvent.wire_fields,
        "request": WireField(dict, max_size=None, check=check_request),
        "holder": WireField(str),
        "user": WireField(dict, None, required=False, max_size=20, check=_check_user),
        "route": WireField(dict, None, required=False, max_size=100, check=_check_route),
    }

    def __init__(self, socket_id, channel, *, request, holder, user=None, route=None, **kw):
        super().__init__(socket_id, channel, **kw)
        self.request = request
        self.holder = holder
        self.user = user
        self.route = route or {}

    async def invoke(self, instance, activation):
        from durable_objects.http import decode_request

        registry = activation.sockets
        ws = registry.handle(self.socket_id, self.channel)
        registry.pending[self.socket_id] = self.holder
        try:
            handler = getattr(instance, "fetch", None)
            response = None
            if handler is None:  # no fetch(): every socket is welcome, without tags
                instance.ctx.accept_websocket(ws)
            else:
                request = decode_request(self.request)
                request.websocket = ws
                request.user = SocketUser(self.user)
                request.route_kwargs = dict(self.route)
                response = await _maybe_await(handler(request))
        finally:
            registry.pending.pop(self.socket_id, None)
        if registry.contains(self.socket_id):
            return {
                "accepted": True,
                "tags": registry.tags(self.socket_id),
                "auto_response": instance.ctx.get_websocket_auto_response(),
            }
        registry.handles.pop(self.socket_id, None)
        code, reason = CLOSE_NOT_ACCEPTED, "Not accepted"
        status = getattr(response, "status_code", None)
        if isinstance(status, int) and 400 <= status <= 599:
            code = 4000 + status
            content = getattr(response, "content", b"") or b""
            reason = truncate_reason(content.decode("utf-8", "replace")) or reason
        return {"accepted": False, "code": code, "reason": reason}

    def released(self, outcome, activation):
        """Add where the socket starts counting its messages, now that it is released."""
        ok, value = outcome
        if ok and value.get("accepted"):
            gen, b, d = activation.host.outbox.position(
                activation.hex, activation.serial, self.socket_id
            )
            value.update(gen=gen, b=b, d=d)
        return outcome


class SocketMessage(SocketEvent):
    """A frame from the client for websocket_message(ws, message)."""

    __slots__ = ("auto_response_at", "message")

    kind = "socket_message"
    wire_fields = {
        **SocketEvent.wire_fields,
        "message": WireField(str, bytes, max_size=wire_limit("WEBSOCKET_MAX_MESSAGE_SIZE")),
        "auto_response_at": WireField(int, float, None, required=False),
    }

    def __init__(self, socket_id, channel, message, *, auto_response_at=None, **kwargs):
        super().__init__(socket_id, channel, **kwargs)
        self.message = message
        # The consumer's last auto-response, for a consumer in another process.
        self.auto_response_at = auto_response_at

    async def invoke(self, instance, activation):
        registry = activation.sockets
        sid = self.socket_id
        presence.note_auto_response(sid, self.auto_response_at)
        if sid in registry.failed or not registry.contains(sid):
            return None  # the socket was closed or failed before this message's turn
        handler = getattr(instance, "websocket_message", None)
        if handler is None:
            return None
        try:
            await _maybe_await(handler(registry.handle(sid, self.channel), self.message))
        except Exception:
            registry.failed.add(sid)
            raise
        return None


class SocketClose(SocketEvent):
    """The connection ended (the client closed it, it died, or it was too slow)."""

    __slots__ = ("code", "reason", "was_clean")

    kind = "socket_close"
    wire_fields = {
        **SocketEvent.wire_fields,
        "code": WireField(int, check=_check_close_code),
        "reason": WireField(str, required=False),
        "was_clean": WireField(bool, required=False),
    }

    def __init__(self, socket_id, channel, *, code, reason="", was_clean=True, **kwargs):
        super().__init__(socket_id, channel, **kwargs)
        self.code = code
        self.reason = reason
        self.was_clean = was_clean

    async def invoke(self, instance, activation):
        activation = activation
        if not activation.sockets.forget(self.socket_id):
            return None  # closed by the object already, or never accepted
        notify(activation, self, "websocket_close", self.code, self.reason, self.was_clean)
        return None


class SocketError(SocketEvent):
    """websocket_message raised: the socket is closed with 1011 and the object is told."""

    __slots__ = ("error",)

    kind = "socket_error"
    wire_fields = {
        **SocketEvent.wire_fields,
        "error": WireField(dict, max_size=None, check=check_encoded_error),
    }

    def __init__(self, socket_id, channel, error, **kwargs):
        super().__init__(socket_id, channel, **kwargs)
        self.error = error

    async def invoke(self, instance, activation):
        from durable_objects.events.errors import decode_exception

        activation = activation
        activation.sockets.forget(self.socket_id)
        notify(activation, self, "websocket_error", decode_exception(self.error))
        return None


class SocketNotice(SocketEvent):
    """websocket_close() or websocket_error() for a socket whose row is already gone.

    A separate event, so that a handler that raises rolls back its own writes only: the
    socket stays gone, and the object is not told again at its next activation.
    """

    __slots__ = ("args", "handler")

    kind = "socket_notice"
    local_only = True  # its arguments may hold a live exception (websocket_error)

    def __init__(self, socket_id, channel, handler, args, **kwargs):
        super().__init__(socket_id, channel, **kwargs)
        self.handler = handler
        self.args = args

    async def invoke(self, instance, activation):
        handler = getattr(instance, self.handler, None)
        if handler is not None:
            ws = activation.sockets.handle(self.socket_id, self.channel)
            await _maybe_await(handler(ws, *self.args))
        return None


def notify(activation, event, handler, *args):
    """Queue handler(ws, *args) as an event of its own, if the object defines it."""
    if activation.instance is not None and getattr(activation.instance, handler, None) is None:
        return
    notice = SocketNotice(event.socket_id, event.channel, handler, args, name=event.name)
    activation.host.submit(activation, notice).add_done_callback(_retrieve)


def _retrieve(future):
    if not future.cancelled():
        future.exception()
