"""Seeing a slow client under daphne: whether its TCP transport's buffer is over the limit.

An ASGI application cannot see how much of what it sent still waits for the client:
daphne writes each frame into Twisted's transport and returns. Twisted's TCP transport
marks itself ``producerPaused`` when its buffer passes ``bufferSize`` (64 KiB) and it has
a streaming producer, which under daphne it always has (twisted.web's HTTPChannel, from
before the upgrade), and clears the mark when the buffer has drained. The consumer finds
the transport through daphne's ``send`` (a ``functools.partial`` of
``Server.handle_reply`` bound to the protocol, under channels' session wrapper) and, while
it is marked, holds further frames in a bounded backlog of its own. Under another server,
or with ``WebsocketCommunicator``, there is no transport to watch and this is a no-op.
"""

import functools

POLL_INTERVAL = 0.02  # seconds between looks at a paused transport


class TransportFlow:
    """Whether one TCP connection's outgoing buffer is over Twisted's limit."""

    def __init__(self, transport):
        self.transport = transport

    @property
    def paused(self):
        transport = self.transport
        return transport is not None and bool(getattr(transport, "producerPaused", False))

    def detach(self):
        self.transport = None


def _unwrap(send):
    """Find daphne's send under middleware wrappers (channels' session middleware)."""
    for _ in range(10):
        if isinstance(send, functools.partial):
            return send
        inner = getattr(getattr(send, "__self__", None), "real_send", None)
        if inner is None:
            return send
        send = inner
    return send


def daphne_protocol(send):
    """daphne's WebSocket protocol (autobahn's) behind send, or None under another server."""
    send = _unwrap(send)
    if not isinstance(send, functools.partial) or not send.args:
        return None
    return send.args[0]


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


def attach(send):
    """A TransportFlow for the daphne connection behind send, or None."""
    transport = tcp_transport(daphne_protocol(send))
    return None if transport is None else TransportFlow(transport)


def close_frame(send, code, reason):
    """Close a daphne connection with any code and a reason; False if send is not daphne's.

    daphne passes a ``websocket.close`` to autobahn's ``sendClose()``, which refuses the
    standard codes a server needs (1009, 1011, 1012) and drops the reason. The protocol's
    ``sendCloseFrame()`` (what daphne itself uses for 1011) sends both.
    """
    send = _unwrap(send)
    if not isinstance(send, functools.partial) or not send.args:
        return False
    protocol = send.args[0]
    if not hasattr(protocol, "sendCloseFrame") or protocol.state != protocol.STATE_OPEN:
        return False
    protocol.sendCloseFrame(code=code, reasonUtf8=reason.encode()[:123], isReply=False)
    return True
