"""One line in a Channels URL router ties a WebSocket path to a DurableObject class.

websocket_urlpatterns = [
    websocket_path("ws/chat/<str:room>/", ChatRoom, name="room"),
    websocket_path("ws/me/", "accounts.Inbox", object_id=lambda scope: str(scope["user"].pk)),
]
"""

from django.urls import path


def websocket_path(route, object_class, *, name=None, object_id=None, consumer=None):
    """A ``path()`` for a Channels ``URLRouter`` whose sockets belong to object_class.

    The object is chosen by the URL kwarg ``name`` (used as the object's name) or by
    ``object_id(scope)``, which returns a DurableObjectId or a name. ``consumer`` is a
    DurableObjectConsumer subclass, if you need one.
    """
    from django.core.exceptions import ImproperlyConfigured

    from durable_objects.consumers import DurableObjectConsumer

    if (name is None) == (object_id is None):
        raise ImproperlyConfigured(
            f"websocket_path({route!r}) needs exactly one of name= and object_id=."
        )
    consumer_class = consumer or DurableObjectConsumer
    application = consumer_class.as_asgi(
        object_class=object_class, name_kwarg=name, object_id=object_id
    )
    return path(route, application)
