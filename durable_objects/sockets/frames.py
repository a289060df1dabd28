"""WebSocket frames built once per message, and written straight to daphne's connections.

A broadcast to N sockets of one process is one frame: ``encode()`` builds its bytes (RFC
6455: a server's frames are not masked) once, and each consumer whose connection is idle
hands the same bytes to its ``FrameWriter``. Through ASGI the same message costs, for every
socket, daphne's ``handle_reply``, a UTF-8 encode and autobahn's framing, then Twisted's
``write()``, which only buffers and asks the reactor to watch the socket (two
``epoll_ctl`` calls and a wake-up per socket) before the bytes leave. The writer sends
them at once when Twisted holds nothing for that connection, as an asyncio transport
does, and leaves whatever the kernel did not take to Twisted's buffer, so order and
backpressure (``flow.py``) hold. A connection in any state autobahn must handle itself
(not open, mid-fragment, queued writes, per-message compression) gets no writer's bytes:
the consumer sends through ASGI instead.
"""

import struct

from . import flow

TEXT = 0x81  # FIN + text opcode
BINARY = 0x82  # FIN + binary opcode


def encode(message):
    """The frame for a do.message's text or bytes, or None if it has neither (or bad text)."""
    text = message.get("text")
    if text is not None:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            return None  # lone surrogates: daphne's path raises the error it always did
        first = TEXT
    else:
        data = message.get("bytes")
        if data is None:
            return None
        first = BINARY
    size = len(data)
    if size < 126:
        header = bytes((first, size))
    elif size < 65536:
        header = struct.pack("!BBH", first, 126, size)
    else:
        header = struct.pack("!BBQ", first, 127, size)
    return header + data


class FrameWriter:
    """Writes ready-made frames to one daphne WebSocket connection."""

    __slots__ = ("protocol", "transport")

    def __init__(self, protocol, transport):
        self.protocol = protocol
        self.transport = transport

    @property
    def ready(self):
        """True if a frame written now would be the next bytes on the connection."""
        protocol, transport = self.protocol, self.transport
        return (
            transport is not None
            and protocol.state == protocol.STATE_OPEN
            and protocol.send_state == protocol.SEND_STATE_GROUND
            and not protocol.send_queue
            and protocol._perMessageCompress is None
            and transport.connected
            and not transport.disconnecting
            and not transport._writeDisconnected
        )

    def write(self, frame):
        """Send frame now if Twisted holds nothing for the connection; buffer the rest."""
        transport = self.transport
        if not transport._tempDataBuffer and len(transport.dataBuffer) == transport.offset:
            try:
                sent = transport.socket.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # Twisted's own write finds the error and closes the connection
            if sent == len(frame):
                return
            frame = frame[sent:]
        transport.write(frame)

    def detach(self):
        self.transport = None


def _encrypted(transport):
    """True if TLS sits between the protocol and this TCP connection (plain bytes must not)."""
    if getattr(transport, "TLS", False):  # startTLS()
        return True
    try:
        from twisted.protocols.tls import TLSMemoryBIOProtocol
    except ImportError:  # pragma: no cover - Twisted ships it
        return False
    return isinstance(getattr(transport, "protocol", None), TLSMemoryBIOProtocol)


def attach(send):
    """A FrameWriter for the daphne connection behind send, or None under another server.

    None too for a TLS connection: its TCP socket carries ciphertext, which only
    Twisted's TLS layer may write.
    """
    protocol = flow.daphne_protocol(send)
    transport = flow.tcp_transport(protocol)
    if transport is None or not hasattr(transport, "_tempDataBuffer") or _encrypted(transport):
        return None
    needed = ("state", "send_state", "send_queue", "_perMessageCompress", "STATE_OPEN")
    if not all(hasattr(protocol, name) for name in needed):
        return None
    return FrameWriter(protocol, transport)
