"""Bookmarks: opaque strings that name one point in one object's replicated history.

A bookmark names a replica generation and, in it, either a Litestream transaction (what
``get_current_bookmark()`` returns: exact) or a moment (``get_bookmark_for_time()``:
the last state the replica held before it). It also carries when it was made, for the
retention check, and a short check of the object's label and id, so one object's
bookmark is refused by another. Generations change when an object moves or is restored;
a bookmark names its own, so it stays valid across a failover.

The text is ``do1-<check>-<generation>-<txid or t>-<milliseconds>``, all hexadecimal;
callers treat it as opaque. docs/topics/backups.md#point-in-time-recovery.
"""

import hashlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

PREFIX = "do1"
_BOOKMARK = re.compile(
    r"do1-(?P<check>[0-9a-f]{8})-(?P<gen>[0-9a-f]{1,8})-(?P<point>t|[0-9a-f]{16})"
    r"-(?P<ms>[0-9a-f]{1,12})\Z"
)
# A bookmark may be a little ahead of this machine's clock (it was made on another).
CLOCK_SKEW = 5.0


class InvalidBookmark(ValueError):
    """A bookmark or a time that cannot be restored; the message says why."""


@dataclass(frozen=True)
class Bookmark:
    """A parsed bookmark: generation, transaction (or None), and a time in UNIX seconds.

    With txid, ``at`` is when the bookmark was made; without, the moment it names.
    """

    generation: int
    txid: int | None
    at: float

    def text(self, label, hex_id):
        point = "t" if self.txid is None else f"{self.txid:016x}"
        millis = round(self.at * 1000)
        return f"{PREFIX}-{object_check(label, hex_id)}-{self.generation:x}-{point}-{millis:x}"

    @property
    def moment(self):
        """The time it names as an aware datetime (UTC)."""
        return datetime.fromtimestamp(self.at, UTC)


def object_check(label, hex_id):
    """Eight hex digits that tell one object's bookmarks from another's."""
    return hashlib.sha256(f"{label}:{hex_id}".encode()).hexdigest()[:8]


def parse(text, *, label, hex_id, retention, now=None):
    """The Bookmark that text names for object (label, hex_id), or InvalidBookmark.

    Refused: not a string or not one of ours, another object's, older than retention
    seconds (the replica may have let go of it), or in the future.
    """
    if not isinstance(text, str):
        raise InvalidBookmark(f"A bookmark is a string, not {type(text).__name__}.")
    match = _BOOKMARK.match(text.strip())
    if match is None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise InvalidBookmark(
            f"{shown!r} is not a bookmark (get one from ctx.storage.get_current_bookmark() "
            "or get_bookmark_for_time())."
        )
    if match["check"] != object_check(label, hex_id):
        raise InvalidBookmark(
            f"The bookmark belongs to another object, not to {label} {hex_id}; a bookmark "
            "restores only the object it was made by (copy() takes the source's)."
        )
    point = None if match["point"] == "t" else int(match["point"], 16)
    bookmark = Bookmark(int(match["gen"], 16), point, int(match["ms"], 16) / 1000)
    if bookmark.generation < 1 or point == 0:
        raise InvalidBookmark(f"{text!r} is not a bookmark: it names no transaction.")
    check_moment(bookmark.at, retention, now=now, what="The bookmark's time")
    return bookmark


def check_moment(when, retention, *, now=None, what="The time"):
    """InvalidBookmark unless when (UNIX seconds) lies inside the retention window."""
    now = time.time() if now is None else now
    shown = datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")
    if when > now + CLOCK_SKEW:
        raise InvalidBookmark(f"{what} ({shown}) is in the future; nothing was restored.")
    if when < now - retention:
        raise InvalidBookmark(
            f"{what} ({shown}) is outside the retention window (REPLICATION['RETENTION'] "
            f"is {retention:g} s): the replica no longer keeps that state."
        )


def unix_seconds(when):
    """when (an aware datetime, or UNIX seconds) as UNIX seconds; TypeError/ValueError."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise InvalidBookmark("The time must be an aware datetime (with a tzinfo).")
        return when.timestamp()
    if isinstance(when, bool) or not isinstance(when, int | float):
        raise TypeError(f"The time must be a datetime or UNIX seconds, not {when!r}.")
    return float(when)
