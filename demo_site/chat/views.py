from django.shortcuts import render

from .objects import ChatRoom


def room(request, name):
    """The chat page; the browser talks to the room over a WebSocket."""
    stub = ChatRoom.objects.get_by_name(name)
    return render(
        request,
        "chat/room.html",
        {"name": name, "object_id": str(stub.id), "label": ChatRoom._meta.label},
    )
