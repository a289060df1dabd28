"""The output side of sockets: held until the commit, then numbered and sent in order.

``emit()`` records what a handler sends (``ws.send``, ``ws.close``, ``ctx.broadcast``) on
the running event. The activation releases an event's messages only after the event's
writes are durable (the output gate); ``Outbox.release`` then numbers them (see
``protocol.Sequence``) and one task per object delivers them in order.

The consumers in this process get them straight from here (``consumer.take()``), with no
channel layer between: a broadcast is one message dict and one frame (``frames.encode``)
for all of them. A consumer whose inbox stays full for ROOM_WAIT is told to close with
``CLOSE_TOO_SLOW``. In a cluster the consumers in other processes get them through the
channel layer: a direct send to a channel over capacity raises ``ChannelFull`` (that
consumer is told to close), a broadcast to such a channel is dropped by the channel layer
without a word, so a consumer finds the gap from the next message's number, and when an
object goes quiet the outbox sends its group a ``SYNC`` with the last number, so that a
lost last message is found too. A group's copies carry this process's ``HOLDER``, so
the consumers here, which had them from ``take()``, skip them.
"""

import asyncio
import logging
import secrets
from collections import deque

from channels.exceptions import ChannelFull

from . import frames, presence
from .effects import AutoResponse, Broadcast, Send
from .protocol import AUTO_RESPONSE, CLOSE, MESSAGE, group_name

SYNC = "do.sync"
SYNC_DELAY = 1.0  # seconds of quiet after a broadcast before the SYNC
ROOM_WAIT = 0.5  # most seconds one message waits for a full consumer channel

logger = logging.getLogger("durable_objects.sockets")


def running_event(activation):
    """The event now running in activation, or a RuntimeError saying why there is none."""
    from durable_objects.events.base import current_event

    running = current_event.get()
    if running is None or running[0] is not activation or activation.closed:
        raise RuntimeError(
            "Socket messages can only be sent from inside one of the object's events "
            "(a handler, a method, the constructor)."
        )
    return running[1]


def emit(activation, effect):
    """Hold effect (see ``effects``) on the event now running; it leaves after the commit."""
    event = running_event(activation)
    if event.outbox is None:
        event.outbox = []
    event.outbox.append(effect)


class Numbering:
    """One activation's numbers: its broadcasts (b) and each socket's messages (d)."""

    __slots__ = ("activation", "b", "directs", "gen")

    def __init__(self, gen):
        self.gen = gen
        self.activation = int(gen.rsplit(".", 1)[1])
        self.b = 0
        self.directs = {}


class Outbox:
    """Numbers and sends every socket message of this host's objects, in release order."""

    def __init__(self, loop, *, distributed=False):
        self.loop = loop
        self.distributed = distributed  # consumers of an object may be in other processes
        self.gen = secrets.token_hex(6)
        self.numbering = {}  # object id (hex) -> its activation's Numbering
        self.queues = {}  # object id -> deque of (channel or None, target, message)
        self._tasks = set()
        self._layer = None
        self._quiet = {}  # object id -> TimerHandle of its pending SYNC

    @property
    def layer(self):
        if self._layer is None:
            from channels.layers import get_channel_layer

            self._layer = get_channel_layer()
        return self._layer

    def numbers(self, object_id, activation):
        """The object's numbering, new for each activation.

        Consumers take a new generation to number from 1 again. An object that moved to
        another host and back, or woke from hibernation, is a new activation: it must
        not go on from numbers a consumer has since forgotten.
        """
        numbering = self.numbering.get(object_id)
        if numbering is None or numbering.activation != activation:
            numbering = Numbering(f"{self.gen}.{activation}")
            self.numbering[object_id] = numbering
        return numbering

    def position(self, object_id, activation, socket_id):
        """(gen, b, d): where a socket accepted now starts counting."""
        numbering = self.numbers(object_id, activation)
        return numbering.gen, numbering.b, numbering.directs.get(socket_id, 0)

    def release(self, object_id, effects, activation):
        """Number effects (an event's held messages) and queue them for the channel layer.

        Each object has a queue and a sending task of its own, so a consumer that makes
        one object's output wait (``_take``) holds up no other object.
        """
        numbering = self.numbers(object_id, activation)
        queue = self.queues.get(object_id)
        start = queue is None
        if start:
            queue = self.queues[object_id] = deque()
        for effect in effects:
            if isinstance(effect, Broadcast | AutoResponse):
                numbering.b += 1
                if isinstance(effect, Broadcast):
                    message = {
                        "type": MESSAGE,
                        effect.key: effect.payload,
                        "tag": effect.tag,
                        "exclude": effect.exclude,
                    }
                else:
                    message = {"type": AUTO_RESPONSE, "pair": effect.pair}
                message.update(gen=numbering.gen, b=numbering.b)
                queue.append((None, object_id, message))
                if self.distributed:  # take() loses nothing silently: no SYNC needed here
                    self._schedule_sync(object_id)
            else:  # Send or Close: numbered per socket
                socket_id = effect.socket_id
                d = numbering.directs.get(socket_id, 0) + 1
                numbering.directs[socket_id] = d
                if isinstance(effect, Send):
                    message = {"type": MESSAGE, effect.key: effect.payload}
                else:
                    message = {"type": CLOSE, "code": effect.code, "reason": effect.reason}
                    numbering.directs.pop(socket_id, None)
                message.update(gen=numbering.gen, b=numbering.b, d=d, socket=socket_id)
                queue.append((effect.channel, socket_id, message))
        if not start:
            return  # the object's sending task is at work: these go out after its others
        waiting = self._hand_over(queue)
        if not queue and waiting is None:
            del self.queues[object_id]  # all taken here and now, no task needed
            return
        task = self.loop.create_task(self._drain(object_id, queue, waiting))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _hand_over(self, queue):
        """Give queued messages to this process's consumers at once, while they take them.

        Most messages go to consumers here that can take them now (``take()``): then no
        task is needed. Stops at the first message that must wait or go through the
        channel layer, leaving it first in queue; returns (consumers still to take it,
        message, frame) if some local consumers took that message and others did not,
        else None.
        """
        while queue:
            channel, target, message = queue[0]
            if channel is None and self.distributed:
                return None  # other processes' consumers: the channel layer's turn
            local = _local_consumers(channel, target)
            if local is None:
                return None  # held by another process: the channel layer's turn
            frame = _frame(message)
            queue.popleft()
            try:
                waiting = [consumer for consumer in local if not consumer.take(message, frame)]
            except Exception:  # as in _drain: one bad consumer must not stop the output
                logger.exception("Sending a socket message failed.")
                if channel is not None:
                    evict(target)
                continue
            if waiting:
                return waiting, message, frame
        return None

    def forget_socket(self, object_id, socket_id):
        numbering = self.numbering.get(object_id)
        if numbering is not None:
            numbering.directs.pop(socket_id, None)

    async def _drain(self, object_id, queue, waiting=None):
        try:
            if waiting is not None:  # a message some local consumers could not take yet
                consumers, message, frame = waiting
                await self._take(consumers, message, frame)
            while queue:
                channel, target, message = queue.popleft()
                try:
                    local = _local_consumers(channel, target)
                    if local:
                        await self._take(local, message, _frame(message))
                    if channel is None:
                        if self.distributed:
                            await self._group_send(group_name(target), message)
                    elif local is None:  # held by another process (a cluster)
                        await self._wait_for_room(channel=channel)
                        await self.layer.send(channel, message)
                except ChannelFull:
                    evict(target)
                except Exception:  # a broken layer must not stop every other object's output
                    logger.exception("Sending a socket message failed.")
                    if channel is not None:
                        evict(target)
        finally:
            del self.queues[object_id]

    async def _take(self, local, message, frame=None):
        """Hand message to each local consumer; wait (ROOM_WAIT at most) for full inboxes.

        A consumer whose inbox is still full after ROOM_WAIT is told to close (4008); the
        others have had the message by then, and the next one waits for them no longer.
        """
        waiting = [consumer for consumer in local if not consumer.take(message, frame)]
        deadline = None
        while waiting:
            now = self.loop.time()
            if deadline is None:
                deadline = now + ROOM_WAIT
            elif now >= deadline:
                for consumer in waiting:
                    consumer.fell_behind()
                return
            await asyncio.sleep(0.001)
            waiting = [consumer for consumer in waiting if not consumer.take(message, frame)]

    async def _group_send(self, group, message):
        """Send message to the group: the consumers of the object in other processes."""
        await self._wait_for_room(group=group)
        await self.layer.group_send(group, {**message, "holder": presence.HOLDER})

    async def _wait_for_room(self, group=None, channel=None):
        """Pace a burst to the consumers: wait (a bounded time) while a channel is nearly full.

        The in-memory layer never suspends a send, so without this one event that
        broadcasts a few hundred messages overruns every consumer's channel before any of
        them runs. Only that layer's queues can be seen; a consumer still full after
        ROOM_WAIT is left to lose the message, and to close with 4008 when it sees the gap.
        """
        layer = self.layer
        queues = getattr(layer, "channels", None)
        if not isinstance(queues, dict):
            return
        if channel is not None:
            members = (channel,)
        else:
            members = getattr(layer, "groups", {}).get(group, ())
        capacity = getattr(layer, "capacity", 100)
        limit = max(1, capacity * 3 // 4)
        deadline = None
        while True:
            full = [m for m in members if m in queues and queues[m].qsize() >= limit]
            if not full:
                return
            now = self.loop.time()
            if deadline is None:
                deadline = now + ROOM_WAIT
            elif now >= deadline:
                # Stuck consumers: close them, and stop waiting for them.
                for member in full:
                    consumer = presence.consumer_on(member)
                    if consumer is not None:
                        consumer.fell_behind()
                    if group is not None:
                        await layer.group_discard(group, member)
                return
            await asyncio.sleep(0.001)

    # -- finding a lost last broadcast ----------------------------------------------------

    def _schedule_sync(self, object_id):
        handle = self._quiet.pop(object_id, None)
        if handle is not None:
            handle.cancel()
        self._quiet[object_id] = self.loop.call_later(SYNC_DELAY, self._sync, object_id)

    def _sync(self, object_id):
        self._quiet.pop(object_id, None)
        if object_id in self.queues:  # still sending: try again after the queue drains
            self._schedule_sync(object_id)
            return
        numbering = self.numbering.get(object_id)
        if numbering is None:
            return
        # Only for the consumers in other processes, through the group. A full channel
        # drops it there, so a lost last message is found this way only when it fits.
        message = {"type": SYNC, "gen": numbering.gen, "b": numbering.b}
        task = self.loop.create_task(self._group_sync(object_id, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _group_sync(self, object_id, message):
        try:
            await self.layer.group_send(
                group_name(object_id), {**message, "holder": presence.HOLDER}
            )
        except Exception:
            logger.warning("Sending a SYNC to %s's group failed.", object_id, exc_info=True)

    def close(self):
        for handle in self._quiet.values():
            handle.cancel()
        self._quiet.clear()


def evict(socket_id):
    """Tell the consumer of socket_id (in this process) to close: it fell behind."""
    consumer = presence.consumer(socket_id)
    if consumer is not None:
        consumer.fell_behind()


def _local_consumers(channel, target):
    """This process's consumers of a queued message, or None if its socket is elsewhere.

    A broadcast (channel None) goes to the object's local consumers (perhaps none); a
    message to one socket to that socket's consumer, if it is in this process.
    """
    if channel is None:
        return presence.local_consumers(target)
    consumer = presence.consumer(target)
    return None if consumer is None else (consumer,)


def _frame(message):
    """The ready-made WebSocket frame of a do.message, else None."""
    return frames.encode(message) if message["type"] == MESSAGE else None
