"""What travels between an object and the consumers holding its sockets, and the checks.

Every message an object emits goes through the channel layer: a broadcast to the object's
group, a direct send to one consumer's channel. Both channel layers drop a ``group_send``
to a channel over capacity without telling anyone, so each message carries sequence
numbers and a consumer that sees a gap closes its socket with ``CLOSE_TOO_SLOW`` instead
of going on with a hole in the conversation. See docs/topics/websockets.md.
"""

from durable_objects.conf import get_config

# Close codes (docs/ref/websockets.md).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_NO_STATUS = 1005  # the client's close frame had no code
CLOSE_ABNORMAL = 1006  # no close frame: the connection died
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011  # a handler raised; the object received websocket_error()
CLOSE_OBJECT_MOVED = 1012  # a cluster's host of the object died or lost it: reconnect
CLOSE_TOO_SLOW = 4008  # the client did not keep up; the object received websocket_close()
CLOSE_RESTORED = 4205  # 4000 + 205 Reset Content: the object's database was restored
CLOSE_BAD_ROUTE = 4400  # the route could not name an object (bad name, bad id)
CLOSE_NOT_ACCEPTED = 4403  # the object did not accept; 4000 + its response's 4xx/5xx status
CLOSE_NOT_FOUND = 4404  # the route refused the name (valid_name, object_id() -> None)
CLOSE_TOO_MANY = 4429  # the client holds WEBSOCKET_MAX_PER_CLIENT sockets or woke too many

# Close reasons a client is told; the details go to the log, never to the client.
REASON_BAD_ROUTE = "This address names no object."
REASON_NOT_FOUND = "No such object."
REASON_INTERNAL_ERROR = "Internal error"
REASON_OBJECT_MOVED = "The object is moving; reconnect."
REASON_RESTORED = "The object was restored to an earlier point; reconnect."
REASON_TOO_MANY_SOCKETS = "Too many connections from your address."
REASON_TOO_MANY_OBJECTS = "Too many new objects from your address; try again in a minute."

MAX_TAGS = 10
MAX_TAG_LENGTH = 256
MAX_ATTACHMENT_SIZE = 16 * 1024
MAX_AUTO_RESPONSE_LENGTH = 2048
MAX_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes

MESSAGE = "do.message"  # a text or bytes frame for one socket or for every socket
CLOSE = "do.close"  # close one socket
AUTO_RESPONSE = "do.auto_response"  # the object's auto-response pair changed


def group_name(object_id):
    """The channel-layer group of the consumers holding an object's sockets."""
    return f"durable-objects.{object_id}"


def check_payload(message, what="A WebSocket message"):
    """Return the frame key for message ("text" or "bytes"), or raise a clear error."""
    if isinstance(message, str):
        key, size = "text", len(message.encode("utf-8", "surrogatepass"))
    elif isinstance(message, (bytes, bytearray, memoryview)):
        key, size = "bytes", len(message)
    else:
        raise TypeError(f"{what} must be str or bytes, not {type(message).__name__}.")
    if size == 0:
        raise ValueError(f"{what} is empty; daphne cannot send an empty frame.")
    limit = get_config()["WEBSOCKET_MAX_MESSAGE_SIZE"]
    if size > limit:
        raise ValueError(f"{what} is {size} bytes; WEBSOCKET_MAX_MESSAGE_SIZE is {limit} bytes.")
    return key


def check_close(code, reason):
    if not isinstance(code, int) or not (code == 1000 or 3000 <= code <= 4999):
        raise ValueError(f"Close code must be 1000 or in 3000-4999, not {code!r}.")
    if not isinstance(reason, str):
        raise TypeError(f"Close reason must be str, not {type(reason).__name__}.")
    if len(reason.encode()) > MAX_REASON_BYTES:
        raise ValueError(f"Close reason is longer than {MAX_REASON_BYTES} bytes (UTF-8).")


def check_tags(tags):
    """Return tags as a list after checking Cloudflare's limits."""
    if isinstance(tags, str):
        raise TypeError("tags must be a list of strings, not a string.")
    tags = list(tags)
    if len(tags) > MAX_TAGS:
        raise ValueError(f"A socket may have at most {MAX_TAGS} tags, not {len(tags)}.")
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"Tags must be strings, not {type(tag).__name__}.")
        if not tag or len(tag) > MAX_TAG_LENGTH:
            raise ValueError(f"A tag must have 1 to {MAX_TAG_LENGTH} characters: {tag[:40]!r}.")
    if len(set(tags)) != len(tags):
        raise ValueError("Tags of one socket must be distinct.")
    return tags


def truncate_reason(reason):
    data = str(reason).encode()[:MAX_REASON_BYTES]
    return data.decode("utf-8", "ignore")


class Sequence:
    """A consumer's view of the numbers on the messages it receives.

    ``gen`` names the sender (one per host); ``b`` counts the object's broadcasts and
    ``d`` the messages sent to this one socket. Every consumer receives every broadcast
    of its object (it filters by tag itself), so a broadcast must carry the next ``b``;
    a direct message carries the next ``d`` and the ``b`` already seen.
    """

    __slots__ = ("b", "d", "gen")

    def __init__(self, gen=None, b=0, d=0):
        self.gen, self.b, self.d = gen, b, d

    def accept(self, message):
        """True if message comes next (advance past it), False after a gap, None if old.

        A consumer joins its object's group before the object accepts it, so broadcasts
        numbered at or below its starting point may still arrive: they are skipped.
        """
        gen, b, d = message["gen"], message["b"], message.get("d")
        if gen != self.gen:  # another host (or a restarted one) numbers afresh
            self.gen, self.b, self.d = gen, 0, 0
        if d is None:
            if b <= self.b:
                return None
            if b != self.b + 1:
                return False
            self.b = b
            return True
        if b != self.b or d != self.d + 1:
            return False
        self.d = d
        return True
