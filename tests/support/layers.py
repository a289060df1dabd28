"""A channel layer that counts what it carries, for the tests that must see it unused."""

from collections import Counter

from durable_objects.layers import InProcessChannelLayer


class CountingChannelLayer(InProcessChannelLayer):
    """``InProcessChannelLayer`` that counts each send and group_send by message type."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.carried = Counter()

    async def send(self, channel, message):
        self.carried[f"send {message.get('type')}"] += 1
        await super().send(channel, message)

    async def group_send(self, group, message):
        self.carried[f"group_send {message.get('type')}"] += 1
        await super().group_send(group, message)
