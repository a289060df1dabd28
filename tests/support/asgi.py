"""The ASGI application of the WebSocket tests: daphne runs it in a process of its own."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.settings")
django.setup()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

from durable_objects.routing import websocket_path  # noqa: E402
from tests.support.objects_sockets import Open, Room  # noqa: E402

websocket_urlpatterns = [
    websocket_path("ws/room/<str:room>/", Room, name="room"),
    websocket_path("ws/lobby/<str:room>/", "tests.Lobby", name="room"),
    websocket_path("ws/open/", Open, object_id=lambda scope: "the-open-one"),
    websocket_path("ws/by-query/", "tests.Room", object_id=lambda s: s["query_string"].decode()),
]

application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
