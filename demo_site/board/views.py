from django.http import Http404
from django.shortcuts import render

from demo_site.objectinfo import object_panel
from demo_site.protocol import is_valid_name

from .objects import KEPT, DrawingBoard
from .strokes import HEIGHT, MAX_POINTS, WIDTH


def board(request, name):
    """The drawing board page: a canvas whose strokes go through the board's WebSocket."""
    if not is_valid_name(name):
        raise Http404("Board names are 1 to 40 letters, digits, '-' or '_'.")
    config = {"name": name, "width": WIDTH, "height": HEIGHT, "maxPoints": MAX_POINTS}
    return render(
        request,
        "board/board.html",
        {"name": name, "obj": object_panel(DrawingBoard, name), "config": config, "kept": KEPT},
    )
