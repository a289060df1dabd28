"""The application daphne serves in the WebSocket benchmark: our rooms and the baseline."""

import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
django.setup()

from django.core.management import call_command  # noqa: E402

from benchmarks.sockets import create_baseline_table  # noqa: E402

call_command("migrate", verbosity=0)  # this process has a work directory of its own
create_baseline_table()

from channels.db import database_sync_to_async  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from benchmarks.models import ChatMessage  # noqa: E402
from benchmarks.objects import BenchRoom  # noqa: E402
from durable_objects.routing import websocket_path  # noqa: E402


class BaselineRoom(AsyncWebsocketConsumer):
    """A chat room as a Channels developer writes one today: ORM save, then group_send."""

    channel_layer_alias = "stock"

    async def connect(self):
        self.group = "baseline-" + self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        await database_sync_to_async(ChatMessage.objects.create)(room=self.group, text=text_data)
        await self.channel_layer.group_send(
            self.group, {"type": "chat.message", "text": text_data}
        )

    async def chat_message(self, event):
        await self.send(text_data=event["text"])


application = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [
                websocket_path("ws/room/<str:room>/", BenchRoom, name="room"),
                path("ws/baseline/<str:room>/", BaselineRoom.as_asgi()),
            ]
        )
    }
)

# What startup made (Django, the apps) is never garbage: keep it out of the full
# collections, whose pauses otherwise show in the p99 (docs/topics/websockets.md).
gc.freeze()
