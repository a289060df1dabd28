"""One line in a Channels URL router ties a WebSocket or HTTP path to a DurableObject class.

websocket_urlpatterns = [
    websocket_path("ws/chat/<str:room>/", ChatRoom, name="room", valid_name=is_room_name),
    websocket_path("ws/me/", "accounts.Inbox", object_id=lambda scope: str(scope["user"].pk)),
    websocket_not_found(),  # last: any other path is closed with 4404, not a 500
]
http_urlpatterns = [
    http_path("api/counter/<str:name>/", Counter, name="name", authenticate=has_api_key),
    re_path(r"", django_asgi_app),  # everything else: Django's views, with middleware
]
"""

import logging

from django.urls import path, re_path

logger = logging.getLogger("durable_objects.sockets")


def websocket_path(
    route, object_class, *, name=None, object_id=None, consumer=None, valid_name=None
):
    """A ``path()`` for a Channels ``URLRouter`` whose sockets belong to object_class.

    The object is chosen by the URL kwarg ``name`` (used as the object's name) or by
    ``object_id(scope)``, which returns a DurableObjectId or a name, or None to refuse.
    ``valid_name(name)``, if given, is asked first about every name: the names it
    refuses are closed with 4404 before any object wakes. ``consumer`` is a
    DurableObjectConsumer subclass, if you need one.
    """
    from django.core.exceptions import ImproperlyConfigured

    from durable_objects.consumers import DurableObjectConsumer

    if (name is None) == (object_id is None):
        raise ImproperlyConfigured(
            f"websocket_path({route!r}) needs exactly one of name= and object_id=."
        )
    if valid_name is not None and not callable(valid_name):
        raise ImproperlyConfigured(
            f"websocket_path({route!r}): valid_name must be a function of the name."
        )
    consumer_class = consumer or DurableObjectConsumer
    application = consumer_class.as_asgi(
        object_class=object_class, name_kwarg=name, object_id=object_id, valid_name=valid_name
    )
    return path(route, application)


def http_path(
    route,
    object_class,
    *,
    name=None,
    id=None,
    object_id=None,
    valid_name=None,
    authenticate=None,
):
    """A ``path()`` for a Channels ``URLRouter`` under ``"http"``: a request is a ``fetch()``.

    Django's URL resolution and middleware are skipped (``http_route.ObjectHttpRoute``).
    The object is chosen by the URL kwarg ``name`` (its name), the URL kwarg ``id`` (its
    64-hex ID; a malformed one is a 400), or ``object_id(scope)``, which returns a
    DurableObjectId or a name, or None for a 404. ``valid_name(name)`` may refuse a name
    (404). ``authenticate(scope)``, sync or async, runs before the body is read: a true
    result lets the request in, a false one is a 403, an HttpResponse is sent instead.
    Bodies over MAX_CALL_SIZE are refused with 413.
    """
    from django.core.exceptions import ImproperlyConfigured

    from durable_objects.http_route import ObjectHttpRoute

    if sum(choice is not None for choice in (name, id, object_id)) != 1:
        raise ImproperlyConfigured(
            f"http_path({route!r}) needs exactly one of name=, id= and object_id=."
        )
    for label, hook in (("valid_name", valid_name), ("authenticate", authenticate)):
        if hook is not None and not callable(hook):
            raise ImproperlyConfigured(f"http_path({route!r}): {label} must be a function.")
    application = ObjectHttpRoute(
        object_class,
        name_kwarg=name,
        id_kwarg=id,
        object_id=object_id,
        valid_name=valid_name,
        authenticate=authenticate,
    )
    return path(route, application)


def websocket_not_found():
    """A last route for a ``URLRouter``: any path no route matched is closed with 4404.

    Without it Channels raises for an unknown path (``..%2F`` decoded into the path, a
    name holding ``/``) and the server fails the handshake with a 500.
    """
    return re_path(r"", not_found)


async def not_found(scope, receive, send):
    """Accept and close at once with 4404, so that the browser sees the code."""
    from durable_objects.sockets import flow
    from durable_objects.sockets.protocol import CLOSE_NOT_FOUND, REASON_NOT_FOUND

    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            logger.info("Refused a socket on %r: no route matches it.", scope.get("path"))
            await send({"type": "websocket.accept"})
            if not flow.close_frame(send, CLOSE_NOT_FOUND, REASON_NOT_FOUND):
                close = {"type": "websocket.close", "code": CLOSE_NOT_FOUND}
                await send({**close, "reason": REASON_NOT_FOUND})
        elif message["type"] == "websocket.disconnect":
            return
