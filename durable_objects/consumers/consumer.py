"""The Channels consumer that ties one client socket to its object.

The consumer holds the connection; the object holds the socket's row (tags, attachment)
and decides everything else. Client frames become events in the object's queue, in
order, without waiting for each other's outcome (at most WEBSOCKET_MAX_IN_FLIGHT
queued). The object's messages are numbered. From an object in this process they come
straight from its outbox (``take()``), without the channel layer; from an object in
another process, on the consumer's channel (direct ones) and the object's group
(broadcasts). A gap, or a client whose transport stays full past
WEBSOCKET_OUTBOUND_BUFFER, closes the socket with 4008 and the object is told. The
connect (which object, the refusals before it wakes, its accept) is
``connect.ConnectMixin``'s. See docs/topics/websockets.md.
"""

import asyncio
import contextlib
import functools
import logging
from collections import deque

from channels.consumer import AsyncConsumer, get_handler_name
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from django.core.exceptions import ImproperlyConfigured

from durable_objects import clients
from durable_objects.conf import get_config
from durable_objects.events.errors import encode_exception, is_unreachable
from durable_objects.runtime.calls import run_or_submit, submit_event
from durable_objects.sockets import flow, presence
from durable_objects.sockets.backlog import Backlog
from durable_objects.sockets.events import (
    SocketClose,
    SocketError,
    SocketMessage,
)
from durable_objects.sockets.protocol import (
    CLOSE_ABNORMAL,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NO_STATUS,
    CLOSE_OBJECT_MOVED,
    CLOSE_TOO_BIG,
    CLOSE_TOO_SLOW,
    REASON_INTERNAL_ERROR,
    REASON_OBJECT_MOVED,
    Sequence,
    truncate_reason,
)

from .connect import ConnectMixin


def _retrieve(future):
    """Mark a fire-and-forget event's failure as seen (the object logged it already)."""
    if not future.cancelled():
        future.exception()


logger = logging.getLogger("durable_objects.sockets")

# Seconds a consumer keeps telling a moving object that its socket closed.
FAREWELL_PATIENCE = 30.0


class DurableObjectConsumer(ConnectMixin, AsyncConsumer):
    """One WebSocket connection of an object (see ``durable_objects.routing``).

    ``object_class`` is the class or its label; the object's ID comes from the URL kwarg
    ``name_kwarg`` (as a name) or from ``object_id(scope)``, which returns a
    DurableObjectId or a name, or None to refuse the connection. ``valid_name(name)``,
    if given, is asked about every name first: a false answer refuses it. A refused
    connection wakes no object.
    """

    object_class = None
    name_kwarg = None
    object_id = None
    valid_name = None

    def __init__(self, *, object_class=None, name_kwarg=None, object_id=None, valid_name=None):
        super().__init__()
        self.object_class = object_class or self.object_class
        self.name_kwarg = name_kwarg or self.name_kwarg
        self.object_id = object_id or self.object_id
        self.valid_name = valid_name or self.valid_name
        if self.object_class is None:
            raise ImproperlyConfigured("DurableObjectConsumer needs object_class.")
        if (self.name_kwarg is None) == (self.object_id is None):
            raise ImproperlyConfigured(
                "DurableObjectConsumer needs exactly one of name_kwarg and object_id."
            )
        self.accepted = False
        self.closing = False
        self.socket_id = None
        self.group = None
        self.tags = frozenset()
        self.auto_response = None
        self.sequence = Sequence()
        self.in_flight = deque()
        self.inbox = deque()  # messages from this process's outbox, not yet handled
        self.inbox_capacity = 100  # the channel layer's capacity, once serving
        self._inbox_ready = None  # the future _serve_inbox waits on while the inbox is empty
        self._taking = False  # _serve_inbox is handling a message
        self.backlog = Backlog(self.send, self._spawn, self._too_slow)
        self._settled = asyncio.Event()  # the connect has been accepted or refused
        self._refresher = None
        self._tasks = set()
        self._farewell = None  # the close (or error) event told to the object
        self.client = None  # the client's address, once counted (clients.take_socket)

    async def __call__(self, scope, receive, send):
        """Serve the connection: one loop for the client's frames, one for the object's.

        Channels' own loop takes one message at a time from both sources, making a task
        and a wait for each. Two loops cost less per frame, and a client whose messages
        wait for room in the object's queue does not hold up what the object sends.
        """
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        if self.channel_layer is None:
            raise ImproperlyConfigured("DurableObjectConsumer needs a channel layer.")
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.inbox_capacity = getattr(self.channel_layer, "capacity", 100)
        self.base_send = send
        outbound = [asyncio.ensure_future(self._serve_object())]
        outbound.append(asyncio.ensure_future(self._serve_inbox()))
        try:
            await self._serve(receive)
        except StopConsumer:
            pass
        finally:
            for task in outbound:
                task.cancel()
            for task in outbound:
                with contextlib.suppress(asyncio.CancelledError, StopConsumer):
                    await task
            if self.accepted and not self.closing:  # the server dropped us: tell the object
                self.closing = True
                self._farewell_to_object(SocketClose, code=CLOSE_ABNORMAL, was_clean=False)
            await self._leave()

    async def _serve_object(self):
        """The object's messages, once the connect is settled.

        Until the object has accepted the socket, its messages (the history a connect
        sends, say) wait in the channel: in a cluster they can arrive before the reply
        that accepts the socket, and would otherwise be dropped.
        """
        await self._settled.wait()
        while True:
            try:
                message = await self.channel_receive()
            except asyncio.CancelledError:
                raise
            except Exception:  # the channel layer's Redis is away: keep this socket's loop
                logger.warning("Receiving the object's messages failed.", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            if message.get("holder") == presence.HOLDER:
                continue  # a group's copy of what this process's outbox gave take()
            await self.dispatch(message)

    async def _serve_inbox(self):
        """The messages of an object in this process (``take()``), once the connect is settled."""
        await self._settled.wait()
        inbox = self.inbox
        while True:
            if not inbox:
                self._inbox_ready = asyncio.get_running_loop().create_future()
                await self._inbox_ready
                continue
            self._taking = True
            try:
                await self.dispatch(inbox.popleft())
            finally:
                self._taking = False

    def take(self, message, frame=None):
        """A message from this process's outbox; False (not taken) if the inbox is full.

        A do.message whose ``frame`` (``sockets.frames.encode``) can go to the client at
        once is handled here, synchronously: nothing waits before it, and the same bytes
        serve every socket of a broadcast. Everything else waits its turn in the inbox.
        """
        if self.closing:
            return True  # nothing more reaches this client; a full inbox must not stall others
        inbox = self.inbox
        if (
            frame is not None
            and not inbox
            and not self._taking
            and self.accepted
            and self.backlog.writable
        ):
            if self._admit(message) is not None:
                self.backlog.write(frame)
            return True
        if len(inbox) >= self.inbox_capacity:
            return False
        inbox.append(message)
        ready = self._inbox_ready
        if ready is not None and not ready.done():
            ready.set_result(None)
        return True

    async def _serve(self, source):
        while True:
            await self.dispatch(await source())

    async def dispatch(self, message):
        """Call the handler for message's type.

        Channels' own dispatch first closes stale database connections through a thread
        (``aclose_old_connections``), for every message. This consumer never uses the
        database, and that thread trip was a third of the cost of each frame sent.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']!r}.")
        await handler(message)

    # -- events for the object ----------------------------------------------------------

    def _submit(self, event_class, *args, **kwargs):
        """Queue an event for the object now; return the future of its outcome."""
        event = event_class(self.socket_id, self.channel_name, *args, name=self.oid.name, **kwargs)
        future = submit_event(self.cls, self.oid, event)
        future.add_done_callback(_retrieve)
        return future

    def _farewell_to_object(self, event_class, *args, **kwargs):
        """Tell the object the socket is gone; it stays ours (not stale) until it has heard.

        In a cluster the object may be moving: the news is sent again until it arrives
        (for up to FAREWELL_PATIENCE seconds), or its row would outlive the socket.
        """
        self._farewell = asyncio.ensure_future(
            self._farewell_until_heard(event_class, args, kwargs)
        )
        socket_id, object_id = self.socket_id, str(self.oid)
        self._farewell.add_done_callback(lambda _: presence.unregister(socket_id, object_id))

    async def _farewell_until_heard(self, event_class, args, kwargs):
        deadline = asyncio.get_running_loop().time() + FAREWELL_PATIENCE
        while True:
            try:
                ok, value = await self._submit(event_class, *args, **kwargs)
            except Exception as exc:
                ok, value = False, encode_exception(exc)
            if ok or not is_unreachable(value):
                return
            if asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.5)

    # -- from the client -----------------------------------------------------------------

    async def websocket_receive(self, message):
        if not self.accepted or self.closing:
            return  # frames after a close are dropped
        text = message.get("text")
        payload = text if text is not None else message.get("bytes")
        if payload is None:
            return
        size = len(text.encode("utf-8", "surrogatepass")) if text is not None else len(payload)
        limit = get_config()["WEBSOCKET_MAX_MESSAGE_SIZE"]
        if size > limit:
            await self._close(CLOSE_TOO_BIG, f"Message of {size} bytes; the limit is {limit}.")
            return
        pair = self.auto_response
        if pair is not None and text == pair[0]:
            presence.record_auto_response(self.socket_id)
            await self._deliver({"type": "websocket.send", "text": pair[1]}, len(pair[1].encode()))
            return
        while len(self.in_flight) >= get_config()["WEBSOCKET_MAX_IN_FLIGHT"]:
            await asyncio.wait([self.in_flight[0]])
            if self.closing:
                return
        when = presence.auto_response_time(self.socket_id)
        event = SocketMessage(
            self.socket_id, self.channel_name, payload, name=self.oid.name, auto_response_at=when
        )
        outcome, future = await run_or_submit(self.cls, self.oid, event)
        if outcome is not None:  # it ran here and then, in this task
            self._message_outcome(*outcome)
            return
        self.in_flight.append(future)
        future.add_done_callback(self._message_done)

    def _message_done(self, future):
        with contextlib.suppress(ValueError):
            self.in_flight.remove(future)
        if future.cancelled():
            return
        exc = future.exception()
        self._message_outcome(
            *((False, encode_exception(exc)) if exc is not None else future.result())
        )

    def _message_outcome(self, ok, value):
        if ok or self.closing:
            return
        # The object could not be reached (not its handler's failure): the client reconnects.
        if is_unreachable(value):
            self._spawn(self._close(CLOSE_OBJECT_MOVED, REASON_OBJECT_MOVED))
        else:
            self._spawn(self._handler_failed(value))

    async def _handler_failed(self, error):
        """websocket_message raised: close with 1011; the object gets websocket_error()."""
        if self.closing:
            return
        self.closing = True
        self._farewell_to_object(SocketError, error)
        await self._send_close(CLOSE_INTERNAL_ERROR, REASON_INTERNAL_ERROR)

    async def websocket_disconnect(self, message):
        if self.accepted and not self.closing:
            self.closing = True
            code = flow.client_close_code(self.base_send, message)
            code = CLOSE_NO_STATUS if code is None else code  # a close frame without a code
            reason = flow.client_close_reason(self.base_send, message)
            was_clean = code != CLOSE_ABNORMAL
            self._farewell_to_object(SocketClose, code=code, reason=reason, was_clean=was_clean)
        await self._leave()
        raise StopConsumer()

    # -- from the object -----------------------------------------------------------------

    async def do_message(self, message):
        if self._admit(message) is None:
            return
        if "text" in message:
            text = message["text"]
            await self._deliver({"type": "websocket.send", "text": text}, len(text.encode()))
        else:
            await self._deliver(
                {"type": "websocket.send", "bytes": message["bytes"]}, len(message["bytes"])
            )

    def _admit(self, message):
        """message if it is for this socket now: in order, its tag, not excluded; else None.

        A gap in the numbers closes the socket (4008).
        """
        if not self.accepted or self.closing:
            return None
        in_order = self.sequence.accept(message)
        if in_order is None:
            return None  # sent before this socket was accepted
        if not in_order:
            self._spawn(self._too_slow("Messages to this socket were lost."))
            return None
        if message.get("socket") is None:
            tag = message["tag"]
            if (tag is not None and tag not in self.tags) or self.socket_id in message["exclude"]:
                return None
        return message

    async def do_close(self, message):
        if not self.accepted or self.closing or message.get("socket") != self.socket_id:
            return
        self.closing = True  # the object closed it and knows: no websocket_close for it
        await self._send_close(message["code"], message["reason"])

    async def do_auto_response(self, message):
        if not self.accepted or self.closing:
            return
        in_order = self.sequence.accept(message)
        if in_order is False:
            await self._too_slow("Messages to this socket were lost.")
            return
        if in_order is None:
            return
        pair = message["pair"]
        self.auto_response = tuple(pair) if pair else None

    async def do_sync(self, message):
        seq = self.sequence
        if not self.accepted or self.closing:
            return
        if message["gen"] == seq.gen and message["b"] != seq.b:
            await self._too_slow("Messages to this socket were lost.")

    def fell_behind(self):
        """Called by the outbox when this socket's channel is over capacity."""
        if not self.closing:
            self._spawn(self._too_slow("The client did not keep up."))

    async def _deliver(self, frame, size):
        await self.backlog.deliver(frame, size)

    # -- closing -------------------------------------------------------------------------

    async def _too_slow(self, reason):
        await self._close(CLOSE_TOO_SLOW, reason, was_clean=False)

    async def _close(self, code, reason, was_clean=True):
        """Close from this side and tell the object (websocket_close)."""
        if self.closing:
            return
        self.closing = True
        self._farewell_to_object(SocketClose, code=code, reason=reason, was_clean=was_clean)
        await self._send_close(code, reason)

    async def _send_close(self, code, reason):
        self.backlog.close()
        await self._leave()
        await self._close_frame(code, reason)

    async def _close_frame(self, code, reason):
        reason = truncate_reason(reason)
        if flow.close_frame(self.base_send, code, reason):
            return
        await self.send({"type": "websocket.close", "code": code, "reason": reason})

    def _spawn(self, coroutine):
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _leave(self):
        if self.client is not None:
            client, self.client = self.client, None
            clients.release_socket(client)
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None
        self.backlog.close()
        if self.socket_id is not None and self._farewell is None:
            presence.unregister(self.socket_id, str(self.oid))
        if self.group is not None:
            group, self.group = self.group, None
            await self.channel_layer.group_discard(group, self.channel_name)
