"""The ASGI application of the server tests: daphne, uvicorn or granian runs it in a process.

HTTP under ``http/`` goes straight to objects (``http_path``); every other HTTP path is
Django's (views in tests/support/urls.py, with the settings' middleware).
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.settings")
django.setup()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import re_path  # noqa: E402

from durable_objects.routing import http_path, websocket_path  # noqa: E402
from tests.support.objects_sockets import Open, Room  # noqa: E402

websocket_urlpatterns = [
    websocket_path("ws/room/<str:room>/", Room, name="room"),
    websocket_path("ws/lobby/<str:room>/", "tests.Lobby", name="room"),
    websocket_path("ws/open/", Open, object_id=lambda scope: "the-open-one"),
    websocket_path("ws/by-query/", "tests.Room", object_id=lambda s: s["query_string"].decode()),
]


def has_key(scope):
    """The http/private/ routes' authenticate hook: an X-Key header, or a 401 that says so."""
    key = dict(scope["headers"]).get(b"x-key")
    if key is None:
        return HttpResponse("Send X-Key.", status=401, headers={"WWW-Authenticate": "Key"})
    return key == b"sesame"


async def open_sesame(scope):
    return dict(scope["headers"]).get(b"x-key") == b"sesame"


http_urlpatterns = [
    http_path("http/counter/<str:name>/", "tests.Counter", name="name"),
    http_path("http/named/<str:name>/", "tests.Counter", name="name", valid_name=str.isalpha),
    http_path("http/id/<str:oid>/", "tests.Counter", id="oid"),
    http_path("http/room/<str:room>/", Room, name="room"),
    http_path("http/private/<str:name>/", "tests.Counter", name="name", authenticate=has_key),
    http_path(
        "http/async-private/",
        "tests.Counter",
        object_id=lambda scope: "vault",
        authenticate=open_sesame,
    ),
    http_path(
        "http/by-query/", "tests.Counter", object_id=lambda s: s["query_string"].decode() or None
    ),
    re_path(r"", get_asgi_application()),
]

application = ProtocolTypeRouter(
    {
        "http": URLRouter(http_urlpatterns),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
