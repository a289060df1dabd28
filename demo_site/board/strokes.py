"""What a stroke on the drawing board is, checked: a colour, a width and up to 256 points.

The board is 1000 x 625 units whatever the size of the canvas showing it; points are
integer pairs in that range.
"""

import re

from demo_site.protocol import Refused

WIDTH, HEIGHT = 1000, 625
MAX_POINTS = 256
MAX_PEN = 40
COLOUR = re.compile(r"#[0-9a-f]{6}")


def clean_stroke(data):
    """Return {"colour", "width", "points"} from a page's stroke message, or raise Refused."""
    colour = data.get("colour")
    if not isinstance(colour, str) or not COLOUR.fullmatch(colour):
        raise Refused("The colour must be #rrggbb in lowercase hex.")
    width = data.get("width")
    if type(width) is not int or not 1 <= width <= MAX_PEN:
        raise Refused(f"The pen width must be a whole number from 1 to {MAX_PEN}.")
    points = data.get("points")
    if not isinstance(points, list) or not 1 <= len(points) <= MAX_POINTS:
        raise Refused(f"A stroke has 1 to {MAX_POINTS} points.")
    cleaned = []
    for point in points:
        if (
            not isinstance(point, list)
            or len(point) != 2
            or any(type(v) is not int for v in point)
            or not 0 <= point[0] <= WIDTH
            or not 0 <= point[1] <= HEIGHT
        ):
            raise Refused(f"Each point is [x, y] in whole units, 0-{WIDTH} by 0-{HEIGHT}.")
        cleaned.append(point)
    return {"colour": colour, "width": width, "points": cleaned}
