"""What an event sends to sockets, held until its commit: one named tuple per kind."""

from typing import NamedTuple


class Broadcast(NamedTuple):
    """A message for every accepted socket of the object (or those with tag)."""

    key: str  # "text" or "bytes"
    payload: str | bytes
    tag: str | None
    exclude: list  # socket ids that do not receive it


class AutoResponse(NamedTuple):
    """The object's auto-response pair changed; its consumers answer with the new one."""

    pair: list | None  # [request, response], or None: no auto-response


class Send(NamedTuple):
    """A message for one socket."""

    socket_id: str
    channel: str
    key: str  # "text" or "bytes"
    payload: str | bytes


class Close(NamedTuple):
    """The object closes one socket."""

    socket_id: str
    channel: str
    code: int
    reason: str
