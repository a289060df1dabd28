"""Seeing a slow client under daphne: its transport's buffer, through Twisted's producer API.

An ASGI application cannot see how much of what it sent is still waiting for the client:
daphne writes each frame into Twisted's transport and returns. Twisted does tell a
registered *push producer* when the transport's buffer passes its limit (64 KiB) and when
it has drained. The consumer registers one on the transport of its connection (found
through daphne's ``send`` callable, a ``functools.partial`` of ``Server.handle_reply``
bound to the protocol) and, while paused, keeps further frames in a bounded backlog of
its own instead of piling them into Twisted. Under another server, or in tests with
``WebsocketCommunicator``, there is no transport to watch and this is a no-op.
"""

import functools


class TransportFlow:
    """A Twisted IPushProducer that only records whether the transport wants a pause."""

    def __init__(self, transport, on_resume):
        self.transport = transport
        self.paused = False
        self._on_resume = on_resume

    def pauseProducing(self):  # Twisted's IPushProducer
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        self._on_resume()

    def stopProducing(self):
        self.paused = False

    def detach(self):
        transport, self.transport = self.transport, None
        if transport is not None and getattr(transport, "producer", None) is self:
            transport.unregisterProducer()


def attach(send, on_resume):
    """Register a TransportFlow on the daphne connection behind send, or return None."""
    if not isinstance(send, functools.partial) or not send.args:
        return None
    transport = getattr(send.args[0], "transport", None)
    if transport is None or not hasattr(transport, "registerProducer"):
        return None
    if getattr(transport, "producer", None) is not None:
        return None  # someone else watches this transport; leave it alone
    try:
        from twisted.internet.interfaces import IPushProducer
        from zope.interface import directlyProvides
    except ImportError:
        return None
    flow = TransportFlow(transport, on_resume)
    directlyProvides(flow, IPushProducer)
    try:
        transport.registerProducer(flow, True)
    except RuntimeError:
        return None
    return flow
