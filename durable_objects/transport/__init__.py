"""Calls and replies between processes, over the channel layer (channels-redis).

Every process of a cluster has one channel. A call for an object held elsewhere goes to
its holder's channel as plain data (the event's wire form from ``wire.py``: its kind,
its fields and its call chain; the caller's channel and a request id); the holder runs
it as any other event and sends ``(ok, value)`` back. Calls from one caller
to one object arrive in the order they were sent: one channel, one receive loop, and
the holder queues a call before it awaits anything.

channels-redis receives one message per Redis round trip, which would cap a process at
about a thousand calls a second. So what is posted to one channel while a send to it is
on its way leaves with the next send, as one message (``BATCH``): one caller pays one
round trip, and many callers share them.

Anything may arrive in a channel (whoever can write to the Redis can send), so the
receive loop checks each item on its own (``wire.py``): a malformed one is logged and
dropped, and answered with an error where its reply channel and id are readable; the
loop goes on with the next. A supervisor restarts the loop if it dies all the same.
"""

import asyncio
import itertools
import logging

from durable_objects.conf import get_config
from durable_objects.events.errors import encode_exception
from durable_objects.exceptions import CallTimeout, ObjectUnavailable

from .wire import (
    BATCH,
    CALL,
    MAX_HOPS,
    REPLY,
    MalformedMessage,
    batch_items,
    check_call,
    check_reply,
    event_from_wire,
    event_to_wire,
)

__all__ = ["BATCH", "CALL", "MAX_HOPS", "REPLY", "Transport"]

logger = logging.getLogger("durable_objects.transport")

RESTART_DELAY = 0.5  # seconds before a receive loop that died is started again


class Transport:
    """This process's channel, its pending calls, and the serving of calls from others."""

    def __init__(self, host, leases):
        from channels.layers import get_channel_layer

        self.host = host
        self.leases = leases  # placement.leases.Leases: heartbeats tell who is alive
        self.layer = get_channel_layer(get_config()["TRANSPORT_LAYER"])
        self.channel = None
        self.pending = {}
        self._ids = itertools.count(1)
        self._tasks = set()
        self._receiver = None
        self._outgoing = {}  # channel -> [(message, future set when it has left)]

    async def start(self):
        # The default prefix, as the consumers' channels: channels-redis receives all of a
        # process's channels of one prefix in one BRPOP; a second prefix would wait for
        # the first's (5 s) timeout before each receive.
        self.channel = await self.layer.new_channel()
        self._receiver = asyncio.ensure_future(self._supervise())

    def _spawn(self, coroutine):
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _supervise(self):
        """Run the receive loop; start it again if it ever dies (it should not)."""
        while True:
            try:
                await self._receive()
            except Exception:  # a cancel, or the close of a loop that is gone, ends it
                logger.exception("The receive loop of %s died; restarting it.", self.channel)
                await asyncio.sleep(RESTART_DELAY)

    async def _receive(self):
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis is away, or sent what the layer cannot decode
                logger.warning("Receiving on %s failed.", self.channel, exc_info=True)
                await asyncio.sleep(0.5)
                continue
            self.handle(message)

    def handle(self, message):
        """Take what the channel received: each call and reply on its own; never raises."""
        try:
            items = batch_items(message)
        except MalformedMessage as exc:
            logger.warning("Dropped a malformed message on %s: %s", self.channel, exc)
            return
        for item in items:
            try:
                self._handle_item(item)
            except MalformedMessage as exc:
                logger.warning("Dropped a malformed message on %s: %s", self.channel, exc)
                self._refuse_malformed(exc)
            except Exception:
                logger.exception("Dropped a message on %s that failed.", self.channel)

    def _handle_item(self, item):
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == REPLY:
            self._take_reply(item)
        elif kind == CALL:
            check_call(item)
            self._serve(item)
        else:
            raise MalformedMessage(
                f"A transport message must have the type {CALL!r} or {REPLY!r}, "
                f"not {str(kind)[:100]!r}."
            )

    def _take_reply(self, item):
        try:
            check_reply(item)
        except MalformedMessage as exc:
            future = self.pending.pop(exc.request, None) if exc.request else None
            if future is not None and not future.done():
                error = ObjectUnavailable(f"The reply to this call was malformed ({exc}).")
                future.set_result((False, encode_exception(error)))
            raise
        future = self.pending.pop(item["id"], None)
        if future is not None and not future.done():
            future.set_result((item["ok"], item["value"]))

    def _refuse_malformed(self, exc):
        """Answer a malformed call whose reply channel and id could be read."""
        if exc.reply is not None and exc.request is not None:
            self._refuse({"reply": exc.reply, "id": exc.request}, exc)

    def _post(self, channel, message):
        """Queue message for channel; return a future set once it has left, in order."""
        sent = asyncio.get_running_loop().create_future()
        queue = self._outgoing.get(channel)
        if queue is None:
            queue = self._outgoing[channel] = []
            self._spawn(self._flush(channel, queue))
        queue.append((message, sent))
        return sent

    async def _flush(self, channel, queue):
        try:
            while queue:
                batch = queue[:]
                del queue[:]
                try:
                    await self.layer.send(
                        channel, {"type": BATCH, "messages": [message for message, _ in batch]}
                    )
                except Exception as exc:
                    for _, sent in batch:
                        if not sent.done():
                            sent.set_exception(exc)
                else:
                    for _, sent in batch:
                        if not sent.done():
                            sent.set_result(None)
        finally:
            del self._outgoing[channel]

    def _serve(self, message):
        """Run a call from another process here (or pass it on) and send the outcome back."""
        from durable_objects.registry import registry

        try:
            cls = registry.get(message["label"])
            object_id = cls.objects.id_from_string(message["hex"])
            name = message["name"]
            if name is not None and cls.objects.id_from_name(name) != object_id:
                raise ValueError(f"The name of the call is not the name of {object_id!r}.")
            object_id.name = name
            event = event_from_wire(message)
            event.check_for(cls)  # a MethodCall: only what a stub may call
        except Exception as exc:
            logger.warning("Refused a call on %s: %s", self.channel, exc)
            self._refuse(message, exc)
            return
        if self.leases.presumed_dead():
            self._refuse(
                message,
                ObjectUnavailable(
                    "This host was paused past its heartbeat; callers may have given the "
                    "call up, so it was not run. Retry."
                ),
            )
            return
        # Queue it now, before any await, so calls keep their order.
        try:
            outcome = self.host.placement.route(cls, object_id, event, hops=message["hops"])
        except Exception as exc:
            self._refuse(message, exc)
            return
        self._spawn(self._reply(message, outcome))

    def _refuse(self, message, exc):
        """Answer a call that will not run with exc."""
        self._spawn(self._send_reply(message, False, encode_exception(exc)))

    async def _reply(self, message, outcome):
        try:
            ok, value = await outcome
        except Exception as exc:
            ok, value = False, encode_exception(exc)
        await self._send_reply(message, ok, value)

    async def _send_reply(self, message, ok, value):
        try:
            reply = {"type": REPLY, "id": message["id"], "ok": ok, "value": value}
            await self._post(message["reply"], reply)
        except Exception:
            logger.warning("The reply to %s could not be sent.", message["reply"], exc_info=True)

    async def send(self, channel, cls, object_id, event, hops):
        """Queue event for the process reading channel; return the future of its reply.

        Messages to one channel leave in the order they were queued, so a caller need not
        wait for one to leave before it queues the next. A send that fails fails the reply.
        """
        if hops >= MAX_HOPS:
            raise ObjectUnavailable(
                f"{object_id!r} could not be placed after {hops} hops; retry the call."
            )
        request = f"{self.channel}:{next(self._ids)}"
        future = asyncio.get_running_loop().create_future()
        future.request = request
        self.pending[request] = future
        message = {
            "type": CALL,
            "id": request,
            "reply": self.channel,
            "label": cls._meta.label,
            "hex": str(object_id),
            "name": object_id.name,
            "hops": hops + 1,
            **event_to_wire(event),
        }
        self._post(channel, message).add_done_callback(
            lambda sent: _fail_unsent(sent, future, object_id)
        )
        return future

    async def wait(self, future, holder, object_id, timed=True):
        """The (ok, value) of a sent event; CallTimeout, or ObjectUnavailable if the holder
        stops heartbeating while it waits. Either way the call may have run; a holder that
        was only paused refuses it when it wakes (see _serve), so it does not run late."""
        timeout = get_config()["CALL_TIMEOUT"] if timed else None  # socket events: untimed
        try:
            return await asyncio.wait_for(self._wait(future, holder, object_id), timeout)
        except TimeoutError:
            raise CallTimeout(
                f"No reply from the process holding {object_id!r} within CALL_TIMEOUT "
                f"({timeout} s); the call may still run. Retry if the method is idempotent."
            ) from None
        finally:
            self.pending.pop(future.request, None)

    async def _wait(self, future, holder, object_id):
        placement = self.leases
        while True:
            done, _ = await asyncio.wait([future], timeout=placement.heartbeat)
            if done:
                return future.result()
            if await placement.channel_of(holder) is None:
                raise ObjectUnavailable(
                    f"The host holding {object_id!r} stopped answering before it replied: "
                    "the call may have run (if it did, its writes are durable). The object "
                    f"moves when its lease ends (within LEASE_TTL, {placement.ttl} s). "
                    "Retry if the method is idempotent."
                )

    async def close(self):
        if self._receiver is not None:
            self._receiver.cancel()
        for task in list(self._tasks):
            task.cancel()


def _fail_unsent(sent, reply, object_id):
    if sent.cancelled() or reply.done():
        return
    exc = sent.exception()
    if exc is not None:
        reply.set_exception(
            ObjectUnavailable(f"The call to {object_id!r} could not be sent ({exc}). Retry.")
        )
