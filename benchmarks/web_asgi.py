"""The application each server runs in the web benchmark (benchmarks/web.py).

HTTP: ``direct/<name>`` goes straight to the object (``http_path``); everything else is
Django (``benchmarks/urls.py``: the floor and a view that calls the object). WebSocket:
a room (SQL + broadcast), an echo object (no storage), and a bare Channels echo
consumer (the floor).
"""

import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
django.setup()

from django.core.management import call_command  # noqa: E402

call_command("migrate", verbosity=0)  # this process has a work directory of its own

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from benchmarks.objects import BenchEcho, BenchHttpCounter, BenchRoom  # noqa: E402
from durable_objects.routing import http_path, websocket_path  # noqa: E402


class BareEcho(AsyncWebsocketConsumer):
    """The WebSocket floor: a bare Channels echo consumer, no object."""

    async def receive(self, text_data=None, bytes_data=None):
        await self.send(text_data=text_data)


application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                http_path("direct/<str:name>", BenchHttpCounter, name="name"),
                re_path(r"", get_asgi_application()),
            ]
        ),
        "websocket": URLRouter(
            [
                path("ws/bare/", BareEcho.as_asgi()),
                websocket_path("ws/room/<str:room>/", BenchRoom, name="room"),
                websocket_path("ws/echo/<str:room>/", BenchEcho, name="room"),
            ]
        ),
    }
)

gc.freeze()  # as benchmarks/asgi.py does: startup's objects are never garbage
