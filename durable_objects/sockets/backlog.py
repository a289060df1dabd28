"""What a consumer holds for a client whose TCP buffer is full, in order and bounded.

Under daphne and uvicorn the consumer watches its connection (``flow.py``). While the
transport is paused, frames wait here and leave, in order, as it drains. Past
WEBSOCKET_OUTBOUND_BUFFER held bytes, ``deliver()`` waits for the client to read half
of it, so the consumer stops taking messages from its channel: the object's outbox then
waits for room (in-memory layer) and closes the socket with 4008 if none comes, or the
channel layer drops a message and the gap closes it. A client that reads nothing for
SLOW_CLIENT_TIMEOUT with a full backlog is closed with 4008 too.
"""

import asyncio
from collections import deque

from durable_objects.conf import get_config

from . import flow, frames

SLOW_CLIENT_TIMEOUT = 10.0  # seconds a full backlog may go unread before 4008


class Backlog:
    def __init__(self, send, spawn, too_slow):
        self._send = send  # coroutine function: hand one frame to the server
        self._spawn = spawn
        self._too_slow = too_slow  # coroutine function: close the socket with 4008
        self.flow = None  # what flow.attach() found: daphne or uvicorn
        self.writer = None  # frames.FrameWriter, under daphne
        self.frames = deque()
        self.size = 0
        self.flushing = False
        self.closed = False
        self.drained = asyncio.Event()

    def watch(self, send):
        """Watch the connection behind send, if its server has an adapter (flow.py)."""
        self.flow = flow.attach(send)
        self.writer = frames.attach(send)

    @property
    def writable(self):
        """True if a ready-made frame can go to the client now (``write``), ahead of nothing."""
        writer = self.writer  # its ready covers the flow's pause: one look per socket
        return writer is not None and not self.frames and writer.ready

    def write(self, frame):
        """Send the bytes of a frame built by ``frames.encode``; only while ``writable``."""
        self.writer.write(frame)

    @property
    def paused(self):
        return self.flow is not None and self.flow.paused

    async def deliver(self, frame, size):
        """Send frame, or hold it (in order) while the client's TCP buffer is full."""
        if not self.frames and not self.paused:
            await self._send(frame)
            return
        self.frames.append((frame, size))
        self.size += size
        if not self.flushing:
            self.flushing = True
            self._spawn(self._flush())
        if self.size > get_config()["WEBSOCKET_OUTBOUND_BUFFER"]:
            self.drained.clear()
            try:
                await asyncio.wait_for(self.drained.wait(), SLOW_CLIENT_TIMEOUT)
            except TimeoutError:
                await self._too_slow("The client did not keep up.")

    async def _flush(self):
        try:
            while self.frames and not self.closed:
                if self.paused:
                    await asyncio.sleep(flow.POLL_INTERVAL)
                    continue
                frame, size = self.frames.popleft()
                self.size -= size
                await self._send(frame)
                if self.size <= get_config()["WEBSOCKET_OUTBOUND_BUFFER"] // 2:
                    self.drained.set()
        finally:
            self.flushing = False
            self.drained.set()

    def close(self):
        """Drop what is held (the socket is closing) and stop watching the transport."""
        self.closed = True
        self.frames.clear()
        self.size = 0
        self.drained.set()
        if self.flow is not None:
            self.flow.detach()
            self.flow = None
        if self.writer is not None:
            self.writer.detach()
            self.writer = None
