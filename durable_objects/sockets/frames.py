"""WebSocket frames built once per message, and written straight to the server's connections.

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

Under uvicorn (the websockets package's sans-I/O protocol, its default) the same message
through ASGI costs, for every socket, a wake-up of the consumer's task, the ASGI dict,
uvicorn's ``send`` and the websockets package's framing; ``UvicornFrameWriter`` hands the
bytes to the connection's asyncio transport, as that ``send`` would after framing them,
while the connection is open, uncompressed and holds nothing unsent. The transport
keeps order and its flow control (``pause_writing()``) as always, TLS included.
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
    """Writes ready-made frames to one daphne WebSocket connection (Twisted's TCP)."""

    __slots__ = ("protocol", "transport")

    def __init__(self, protocol, transport):
        self.protocol = protocol
        self.transport = transport

    @property
    def ready(self):
        """True if a frame written now would be the next bytes on an unpaused connection."""
        protocol, transport = self.protocol, self.transport
        return (
            transport is not None
            and not transport.producerPaused
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


class UvicornFrameWriter:
    """Writes ready-made frames to one uvicorn WebSocket connection (its asyncio transport)."""

    __slots__ = ("conn", "open", "protocol")

    def __init__(self, protocol, open_state):
        self.protocol = protocol
        self.conn = protocol.conn  # the websockets package's ServerProtocol
        self.open = open_state

    @property
    def ready(self):
        """True if a frame written now would be the next bytes on an unpaused connection."""
        protocol, conn = self.protocol, self.conn
        return (
            protocol is not None
            and protocol.handshake_complete
            and protocol.initial_response is None
            and not protocol.close_sent
            and not protocol.disconnected
            and protocol.writable.is_set()
            and conn.state is self.open
            and not conn.extensions  # per-message deflate: only the package may frame
            and not conn.expect_continuation_frame
            and not conn.writes
            and not protocol.transport.is_closing()
        )

    def write(self, frame):
        """Hand frame to the transport, which sends it now or buffers it, in order."""
        self.protocol.transport.write(frame)

    def detach(self):
        self.protocol = None


def _uvicorn_writer(send):
    protocol = flow.uvicorn_protocol(send)
    conn = getattr(protocol, "conn", None)
    needed = ("state", "extensions", "expect_continuation_frame", "writes")
    if conn is None or not all(hasattr(conn, name) for name in needed):
        return None  # the wsproto or legacy websockets protocol: plain ASGI
    needed = ("handshake_complete", "initial_response", "close_sent", "disconnected", "writable")
    if not all(hasattr(protocol, name) for name in needed):
        return None
    try:
        from websockets.protocol import State
    except ImportError:  # pragma: no cover - the sans-I/O protocol is the package's
        return None
    return UvicornFrameWriter(protocol, State.OPEN)


def attach(send):
    """A frame writer for the daphne or uvicorn connection behind send, or None.

    None under another server (granian, ``WebsocketCommunicator``), and under daphne for
    a TLS connection: its TCP socket carries ciphertext, which only Twisted's TLS layer
    may write. uvicorn's transport does its own TLS.
    """
    writer = _uvicorn_writer(send)
    if writer is not None:
        return writer
    protocol = flow.daphne_protocol(send)
    transport = flow.tcp_transport(protocol)
    if transport is None or _encrypted(transport):
        return None
    if not all(hasattr(transport, name) for name in ("_tempDataBuffer", "producerPaused")):
        return None
    needed = ("state", "send_state", "send_queue", "_perMessageCompress", "STATE_OPEN")
    if not all(hasattr(protocol, name) for name in needed):
        return None
    return FrameWriter(protocol, transport)
