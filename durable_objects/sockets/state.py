"""The WebSocket half of ``ctx`` (docs/topics/websockets.md)."""

import json

from . import presence
from .effects import AutoResponse, Broadcast
from .handle import WebSocket
from .outbox import emit
from .protocol import MAX_AUTO_RESPONSE_LENGTH, check_payload, check_tags


class SocketStateMixin:
    """Accepting, listing, tagging and messaging an object's sockets; needs _activation."""

    def accept_websocket(self, ws, tags=()):
        """Accept ws, the socket of the connect now running, with up to 10 tags."""
        registry = self._activation.sockets
        holder = registry.pending.get(getattr(ws, "id", None))
        if holder is None:
            raise ValueError(
                "Only the socket of the connect being handled (request.websocket) can be "
                "accepted, once."
            )
        tags = check_tags(tags)
        registry.add(ws, tags, holder)
        del registry.pending[ws.id]

    def get_websockets(self, tag=None):
        """The accepted sockets still connected, oldest first (those with tag, if given)."""
        if tag is not None and not isinstance(tag, str):
            raise TypeError(f"tag must be a string, not {type(tag).__name__}.")
        return self._activation.sockets.websockets(tag)

    def get_tags(self, ws):
        return self._activation.sockets.tags(ws.id)

    def broadcast(self, message, tag=None, exclude=()):
        """Send message to every accepted socket (or those with tag), except exclude.

        One message to the object's channel-layer group; it leaves after the commit.
        """
        key = check_payload(message)
        if tag is not None and not isinstance(tag, str):
            raise TypeError(f"tag must be a string, not {type(tag).__name__}.")
        if isinstance(exclude, WebSocket):
            exclude = (exclude,)
        excluded = [ws.id if isinstance(ws, WebSocket) else str(ws) for ws in exclude]
        payload = bytes(message) if key == "bytes" else message
        emit(self._activation, Broadcast(key, payload, tag, excluded))

    def set_websocket_auto_response(self, request=None, response=None):
        """Answer the text request with response in the consumer, without waking the object.

        Call with no arguments to remove the pair.
        """
        if (request is None) != (response is None):
            raise ValueError("Give both request and response, or neither to remove the pair.")
        pair = None
        if request is not None:
            for value in (request, response):
                if not isinstance(value, str):
                    raise TypeError(
                        f"Auto-response strings must be str, not {type(value).__name__}."
                    )
                if not value or len(value) > MAX_AUTO_RESPONSE_LENGTH:
                    raise ValueError(
                        f"Auto-response strings have 1 to {MAX_AUTO_RESPONSE_LENGTH} characters."
                    )
            pair = [request, response]
        shard = self._activation.shard_for_event()
        shard.execute(
            "INSERT OR REPLACE INTO main._do_meta(key, value) VALUES ('auto_response', ?)",
            (json.dumps(pair),),
        )
        emit(self._activation, AutoResponse(pair))

    def get_websocket_auto_response(self):
        """The (request, response) pair, or None."""
        shard = self._activation.shard_for_event(create=False)
        if shard is None:
            return None
        value = shard.meta("auto_response")
        pair = json.loads(value) if value is not None else None
        return tuple(pair) if pair else None

    def get_websocket_auto_response_timestamp(self, ws):
        """UNIX time the consumer last answered ws's auto-response, or None."""
        return presence.auto_response_time(ws.id)
