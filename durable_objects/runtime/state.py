"""``ctx``: the DurableObjectState an object receives in its constructor."""

import asyncio
import inspect

from durable_objects.conf import get_config
from durable_objects.sockets.state import SocketStateMixin
from durable_objects.storage import DurableObjectStorage

from .restore import PointInTimeMixin
from .schedules import ScheduleStateMixin


class ObjectStorage(PointInTimeMixin, DurableObjectStorage):
    """``ctx.storage``: the shard's SQL, key-value and alarm APIs, and its bookmarks."""


class DurableObjectState(SocketStateMixin, ScheduleStateMixin):
    """What an object knows of itself: its id, its storage, its concurrency controls,
    (from ``SocketStateMixin``) its WebSockets and (from ``ScheduleStateMixin``) its
    schedules and queue."""

    def __init__(self, activation):
        self._activation = activation
        self.id = activation.id
        self.storage = ObjectStorage(activation)

    def block_concurrency_while(self, fn):
        """Run fn (sync or async) before any further event is delivered; return its task.

        If fn raises or runs past BLOCK_CONCURRENCY_TIMEOUT seconds, the instance is reset.
        """

        async def run():
            result = fn()
            if inspect.isawaitable(result):
                result = await result
            return result

        timeout = get_config()["BLOCK_CONCURRENCY_TIMEOUT"]
        task = asyncio.ensure_future(asyncio.wait_for(run(), timeout))
        self._activation.gates.append(task)
        return task

    def abort(self, reason=None):
        """Reset the instance: the current event fails and its uncommitted writes are lost."""
        raise self._activation.abort(reason or "ctx.abort() was called")

    def __repr__(self):
        return f"<DurableObjectState {self.id!r}>"
