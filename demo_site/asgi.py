"""ASGI entry point of the demo site (daphne serves it): HTTP, and the demos' WebSockets."""

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")

from durable_objects.asgi import get_asgi_application

# Django's handler, with its per-request threads kept in a pool (docs/topics/servers.md).
django_asgi_app = get_asgi_application()  # sets Django up before the imports below

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from demo_site.protocol import is_valid_name  # noqa: E402
from durable_objects.routing import websocket_not_found, websocket_path  # noqa: E402

# A name no demo page can have is refused (4404) before its object wakes, so that no
# shard is made for it; any other path is refused with 4404 too.
websocket_urlpatterns = [
    websocket_path("ws/chat/<str:room>/", "chat.ChatRoom", name="room", valid_name=is_valid_name),
    websocket_path(
        "ws/board/<str:board>/", "board.DrawingBoard", name="board", valid_name=is_valid_name
    ),
    websocket_path("ws/poll/<str:poll>/", "poll.Poll", name="poll", valid_name=is_valid_name),
    websocket_path(
        "ws/flights/<str:code>/", "flights.Flight", name="code", valid_name=is_valid_name
    ),
    websocket_path(
        "ws/trial/<str:account>/", "trial.Subscription", name="account", valid_name=is_valid_name
    ),
    websocket_not_found(),
]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)

# Keep what startup made out of the garbage collector's full collections, whose pauses
# grow with the number of connected sockets (docs/topics/websockets.md).
gc.freeze()
