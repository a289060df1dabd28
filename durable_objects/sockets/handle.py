"""``ws``: the handle an object holds for one of its WebSocket clients."""

from .effects import Close, Send
from .outbox import emit, running_event
from .protocol import check_close, check_payload


class WebSocket:
    """One client socket of an object, valid across hibernation (same ``id``).

    ``send()`` and ``close()`` are held by the output gate: they leave when the event's
    writes are durable, and not at all if the event fails.
    """

    __slots__ = ("_activation", "channel", "id")

    def __init__(self, activation, socket_id, channel):
        self._activation = activation
        self.id = socket_id
        self.channel = channel

    def _registry(self):
        activation = self._activation
        if activation.closed:
            raise RuntimeError("This handle belongs to an instance that is gone.")
        return activation.sockets

    def send(self, message):
        """Send text (str) or binary (bytes) to this client."""
        key = check_payload(message)
        running_event(self._activation)
        self._check_open()
        payload = bytes(message) if key == "bytes" else message
        emit(self._activation, Send(self.id, self.channel, key, payload))

    def close(self, code=1000, reason=""):
        """Close the connection; the socket leaves get_websockets() at once."""
        check_close(code, reason)
        registry = self._registry()
        if registry.remove(self.id):
            emit(self._activation, Close(self.id, self.channel, code, reason))

    def serialize_attachment(self, value):
        """Keep value (msgpack-serializable, at most 16 KiB) with the socket until it closes."""
        self._registry().set_attachment(self.id, value)

    def deserialize_attachment(self):
        """The value last given to serialize_attachment(), or None."""
        return self._registry().attachment(self.id)

    def _check_open(self):
        registry = self._registry()
        if registry.contains(self.id):
            return
        if self.id in registry.pending:
            raise RuntimeError("Accept the WebSocket with ctx.accept_websocket() before send().")
        raise RuntimeError("This WebSocket is closed: nothing can be sent on it.")

    def __eq__(self, other):
        return isinstance(other, WebSocket) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<WebSocket {self.id}>"
