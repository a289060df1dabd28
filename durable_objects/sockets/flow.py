"""What the consumer needs from the server that ASGI does not say: a small adapter each.

Two things. **Backpressure**: whether the client's TCP buffer is full, so that the
consumer holds frames in its own bounded backlog (``backlog.py``) instead of handing
them to a server that queues without limit (daphne) or suspends the send until the
client reads (uvicorn). **Closing**: a close with any code and a reason, reaching a
client even when it has stopped reading.

- daphne writes each frame into Twisted's transport and returns. Twisted's TCP transport
  marks itself ``producerPaused`` when its buffer passes ``bufferSize`` (64 KiB) and it
  has a streaming producer, which under daphne it always has (twisted.web's HTTPChannel,
  from before the upgrade). daphne's ``send`` is a ``functools.partial`` of
  ``Server.handle_reply`` bound to the protocol. A ``websocket.close`` goes to
  autobahn's ``sendClose()``, which refuses the standard codes a server needs (1009,
  1011, 1012) and drops the reason; the protocol's ``sendCloseFrame()`` sends both.
  Its ``websocket.disconnect`` drops the client's reason too; autobahn keeps it as
  ``remoteCloseReason``.
- uvicorn's ``send`` is a bound method of its WebSocket protocol (the websockets
  package's sans-I/O one, wsproto, or the legacy websockets one), which keeps asyncio's
  ``pause_writing()`` as ``writable`` (or ``_paused``). ASGI's ``websocket.close`` carries
  any code and the reason; only a client that reads nothing needs more: the close would
  wait behind the full buffer forever, so its connection is reset (the object has been
  told 4008 already). A connection lost without a close frame arrives as 1005, "no
  status"; the protocol shows that no close frame came, and the object hears 1006.
- granian's ``send`` suspends while the client's buffer is full, as ASGI allows, and
  sends any code and reason; there is nothing to see from Python, so no adapter. Its
  ``websocket.disconnect`` has no reason, and a close to a client that reads nothing
  waits until it reads (docs/topics/servers.md).

Under another server, or with ``WebsocketCommunicator``, there is no adapter: the
consumer uses plain ASGI, and a slow client makes its sends wait.
"""

import contextlib
import functools
import socket
import struct

from .protocol import CLOSE_ABNORMAL, CLOSE_NO_STATUS

POLL_INTERVAL = 0.02  # seconds between looks at a paused transport


class TransportFlow:
    """Whether one TCP connection's outgoing buffer is over daphne's (Twisted's) limit."""

    def __init__(self, transport):
        self.transport = transport

    @property
    def paused(self):
        transport = self.transport
        return transport is not None and bool(getattr(transport, "producerPaused", False))

    def detach(self):
        self.transport = None


class ProtocolFlow:
    """Whether a uvicorn WebSocket protocol's transport has called ``pause_writing()``."""

    def __init__(self, protocol):
        self.protocol = protocol

    @property
    def paused(self):
        return self.protocol is not None and _uvicorn_paused(self.protocol)

    def detach(self):
        self.protocol = None


def _unwrap(send):
    """The server's own send under middleware wrappers (channels' session middleware)."""
    for _ in range(10):
        if isinstance(send, functools.partial):
            return send
        inner = getattr(getattr(send, "__self__", None), "real_send", None)
        if inner is None:
            return send
        send = inner
    return send


def _daphne_protocol(send):
    if isinstance(send, functools.partial) and send.args:
        protocol = send.args[0]
        if hasattr(protocol, "sendCloseFrame"):
            return protocol
    return None


def _uvicorn_protocol(send):
    protocol = getattr(send, "__self__", None)
    if protocol is None or not type(protocol).__module__.startswith("uvicorn.protocols."):
        return None
    return protocol if hasattr(protocol, "transport") else None


def _uvicorn_paused(protocol):
    writable = getattr(protocol, "writable", None)
    if writable is not None:
        return not writable.is_set()
    return bool(getattr(protocol, "_paused", False))  # the legacy websockets protocol


def attach(send):
    """A flow (``paused``, ``detach()``) for the connection behind send, or None."""
    send = _unwrap(send)
    protocol = _daphne_protocol(send)
    if protocol is not None:
        return _daphne_flow(protocol)
    protocol = _uvicorn_protocol(send)
    if protocol is not None:
        return ProtocolFlow(protocol)
    return None


def daphne_protocol(send):
    """daphne's WebSocket protocol (autobahn's) behind send, or None under another server."""
    return _daphne_protocol(_unwrap(send))


def uvicorn_protocol(send):
    """uvicorn's WebSocket protocol behind send, or None under another server."""
    return _uvicorn_protocol(_unwrap(send))


def tcp_transport(protocol):
    """The Twisted TCP connection under a daphne protocol, or None."""
    # The protocol's transport is twisted.web's HTTP channel wrapper it was upgraded
    # from; the TCP connection, with the buffer, is the transport of its channel.
    transport = getattr(protocol, "transport", None)
    for _ in range(5):
        if transport is None or hasattr(transport, "producerPaused"):
            break
        channel = getattr(transport, "_channel", None)
        transport = getattr(channel if channel is not None else transport, "transport", None)
    if transport is None or not hasattr(transport, "producerPaused"):
        return None
    return transport


def _daphne_flow(protocol):
    transport = tcp_transport(protocol)
    return None if transport is None else TransportFlow(transport)


def _reset(transport):
    """Abort with a TCP reset: a plain close would keep the unread megabytes in the kernel.

    A closed socket with data still to send lingers, ESTABLISHED at the client's end,
    for as long as the kernel retries; SO_LINGER with a zero timeout drops it at once.
    uvicorn then tells the consumer (``websocket.disconnect``, 1006).
    """
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def client_close_code(send, message):
    """The code of the client's close as the object hears it; None if it sent no code.

    uvicorn (the sans-I/O protocol) reports a connection lost without a close frame, a
    ping that timed out among them, as 1005, as if the client had closed without a
    code: its protocol shows whether a close frame came, and if none did, it is 1006.
    """
    code = message.get("code")
    if code == CLOSE_NO_STATUS:
        protocol = _uvicorn_protocol(_unwrap(send))
        conn = getattr(protocol, "conn", None)
        if conn is not None and getattr(conn, "close_rcvd", True) is None:
            return CLOSE_ABNORMAL
    return code


def client_close_reason(send, message):
    """The reason of the client's close: the disconnect message's, else daphne's protocol's."""
    reason = message.get("reason")
    if reason:
        return reason
    protocol = _daphne_protocol(_unwrap(send))
    if protocol is None:
        return ""
    return getattr(protocol, "remoteCloseReason", None) or ""


def close_frame(send, code, reason):
    """Close the connection behind send itself; False if plain ASGI's close is right.

    True under daphne (whose ASGI close cannot carry 1009, 1011, 1012 or a reason), and
    under uvicorn for a client whose buffer is full (whose close would never leave).
    """
    send = _unwrap(send)
    protocol = _daphne_protocol(send)
    if protocol is not None:
        if protocol.state != protocol.STATE_OPEN:
            return False
        protocol.sendCloseFrame(code=code, reasonUtf8=reason.encode()[:123], isReply=False)
        return True
    protocol = _uvicorn_protocol(send)
    if protocol is not None and _uvicorn_paused(protocol):
        transport = protocol.transport
        if transport is not None and not transport.is_closing():
            _reset(transport)
        return True
    return False
