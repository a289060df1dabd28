from django.http import Http404
from django.shortcuts import render

from demo_site.objectinfo import object_panel
from demo_site.protocol import is_valid_name

from .objects import MAX_TEXT, MAX_USER, ChatRoom


def room(request, name):
    """The chat page; the browser talks to the room over a WebSocket."""
    if not is_valid_name(name):
        raise Http404("Room names are 1 to 40 letters, digits, '-' or '_'.")
    return render(
        request,
        "chat/room.html",
        {
            "name": name,
            "obj": object_panel(ChatRoom, name),
            "max_text": MAX_TEXT,
            "max_user": MAX_USER,
            "rooms": _other_rooms(name),
        },
    )


def _other_rooms(name, limit=12):
    """Names of rooms with storage, from the catalog (it lags by a flush or two)."""
    names = sorted(i.name for i in ChatRoom.objects.all() if i.name and i.name != name)
    return [n for n in names if is_valid_name(n)][:limit]
