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
        },
    )
