"""``InProcessChannelLayer``: Channels' in-memory layer, made to scale with sockets.

The stock ``InMemoryChannelLayer`` scans every channel and every group for expired
entries on each ``receive()``. When one broadcast wakes N consumers, each one's receive
scans all N channels: O(N²) per broadcast, 300 ms for 1,000 sockets on our machine.
This layer does the same cleaning at most once per ``clean_interval`` seconds,
``group_send`` copies a message once for all members instead of once per member
(receivers must not mutate what they receive; channels' consumers do not), and a
channel's queue is kept while its consumer waits on it instead of being dropped and
made again for every message (idle ones are dropped by the periodic cleaning). Everything
else, including capacity, ``ChannelFull`` on ``send()`` and the silent drop of a
``group_send`` to a full channel, is the stock behaviour. Single process only, like
the layer it extends: the embedded default.
"""

import asyncio
import contextlib
import time
from copy import deepcopy

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer


class InProcessChannelLayer(InMemoryChannelLayer):
    def __init__(self, clean_interval=1.0, **kwargs):
        super().__init__(**kwargs)
        self.clean_interval = clean_interval
        self._cleaned_at = 0.0
        self._receiving = {}  # channel -> receive() calls waiting on it

    def _clean_expired(self):
        now = time.monotonic()
        if now - self._cleaned_at >= self.clean_interval:
            self._cleaned_at = now
            super()._clean_expired()
            for channel, queue in list(self.channels.items()):
                if queue.empty() and channel not in self._receiving:
                    del self.channels[channel]

    async def receive(self, channel):
        self.require_valid_channel_name(channel)
        self._clean_expired()
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        self._receiving[channel] = self._receiving.get(channel, 0) + 1
        try:
            _, message = await queue.get()
        finally:
            waiting = self._receiving[channel] - 1
            if waiting:
                self._receiving[channel] = waiting
            else:
                del self._receiving[channel]
        return message

    async def flush(self):
        await super().flush()
        self._receiving = {}

    async def group_send(self, group, message):
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        members = self.groups.get(group)
        if not members:
            return
        item = (time.time() + self.expiry, deepcopy(message))
        for channel in list(members):
            queue = self.channels.get(channel)
            if queue is None:
                queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
            # A full channel loses the message, as in the stock layer; our consumers find
            # the gap in the numbers.
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(item)


__all__ = ["ChannelFull", "InProcessChannelLayer"]
