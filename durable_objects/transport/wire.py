"""The wire codec: an event as plain data for another process, and back.

An event crosses as ``{"kind", "fields", "chain"}``: its kind, what its ``to_wire()``
gives, and its call chain. The receiver looks the kind up among the Event subclasses
registered in its process (``events/base.py``), so the modules defining them must be
imported there: the app config imports the runtime's own, Django's admin autodiscovery
the admin's, and a project its own where its objects are.

What arrives is checked before it is used: anyone who can write to the channel layer's
Redis can put anything in a host's channel. ``batch_items()``, ``check_call()`` and
``check_reply()`` check the transport's envelopes (``MalformedMessage``), and
``event_from_wire()`` the event's kind, chain and fields (each kind's ``wire_fields``).
"""

from durable_objects.events.base import (
    MAX_WIRE_TEXT,
    WireField,
    check_encoded_error,
    event_kind,
)

CALL = "do.call"
REPLY = "do.reply"
BATCH = "do.batch"  # calls and replies for one process, sent together
MAX_HOPS = 4
MAX_BATCH = 100_000  # items of one BATCH
MAX_CHAIN = 256  # tokens of a call chain (one per event on the way)
MAX_TOKEN = 400  # characters of one chain token (a waiter: ~<label>/<hex id>:<token>)


class MalformedMessage(ValueError):
    """A transport message from another process that does not have the documented shape.

    ``reply`` and ``id`` are where to answer, when the message had them readable.
    """

    def __init__(self, message, *, reply=None, request=None):
        super().__init__(message)
        self.reply = reply
        self.request = request


def _check_hops(hops):
    if not 0 <= hops <= MAX_HOPS:
        raise ValueError(f"must be from 0 to {MAX_HOPS}")


def _check_chain(chain):
    for token in chain:
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN:
            raise ValueError(f"must hold tokens of 1 to {MAX_TOKEN} characters")


def _check_hex(hex_string):
    if len(hex_string) != 64:
        raise ValueError("must be 64 hex digits")


_TEXT = WireField(str)
CALL_FIELDS = {
    "type": _TEXT,
    "id": _TEXT,
    "reply": _TEXT,
    "label": _TEXT,
    "hex": WireField(str, check=_check_hex),
    "name": WireField(str, None, max_size=None),  # the ID checks it (from_name)
    "hops": WireField(int, check=_check_hops),
    "kind": WireField(str, max_size=200),
    "fields": WireField(dict, max_size=None),  # the kind checks them (wire_fields)
    "chain": WireField(list, max_size=MAX_CHAIN, check=_check_chain),
}
REPLY_FIELDS = {"type": _TEXT, "id": _TEXT, "ok": WireField(bool), "value": None}


def _problems(message, schema):
    if not isinstance(message, dict):
        return f"is a {type(message).__name__}, not a dict"
    missing = sorted(set(schema) - set(message))
    if missing:
        return f"lacks {missing}"
    unknown = sorted(str(key)[:100] for key in set(message) - set(schema))
    if unknown:
        return f"has unknown keys {unknown}"
    for name, field in schema.items():
        problem = field is not None and field.validate(message[name])
        if problem:
            return f"has a {name!r} that {problem}"
    return None


def _readable(message, key):
    value = message.get(key) if isinstance(message, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= MAX_WIRE_TEXT else None


def batch_items(message):
    """The calls and replies of what a channel received (a BATCH, or one item)."""
    if not isinstance(message, dict):
        raise MalformedMessage(f"A transport message must be a dict, not {type(message)}.")
    if message.get("type") != BATCH:
        return [message]
    items = message.get("messages")
    if not isinstance(items, list) or len(items) > MAX_BATCH:
        raise MalformedMessage(f"A {BATCH} must have 'messages', a list of <= {MAX_BATCH}.")
    return items


def check_call(message):
    """Refuse a CALL that lacks a field or has one of another type or size."""
    problem = _problems(message, CALL_FIELDS)
    if problem is not None:
        raise MalformedMessage(
            f"A {CALL} message {problem}.",
            reply=_readable(message, "reply"),
            request=_readable(message, "id"),
        )


def check_reply(message):
    """Refuse a REPLY that lacks a field, or whose error is not an encoded error."""
    problem = _problems(message, REPLY_FIELDS)
    if problem is None and not message["ok"]:
        try:
            check_encoded_error(message["value"])
        except ValueError as exc:
            problem = f"has a 'value' that is not an error ({exc})"
    if problem is not None:
        raise MalformedMessage(f"A {REPLY} message {problem}.", request=_readable(message, "id"))


def event_to_wire(event):
    """The fields of event another process needs to run it (msgpack-serializable)."""
    cls = type(event)
    if cls.local_only:
        raise TypeError(
            f"A {cls.__name__} cannot be sent to another process: it holds Python objects, "
            "so the object must be live in the process that made it."
        )
    if cls.__dict__.get("kind") is None:
        raise TypeError(
            f"A {cls.__name__} has no kind of its own, so another process could not tell "
            "it from its parent; give the class a kind."
        )
    return {"kind": cls.kind, "fields": event.to_wire(), "chain": list(event.chain)}


def event_from_wire(message):
    """Rebuild the event of a message from another process; ValueError if it cannot be."""
    kind = message.get("kind")
    if not isinstance(kind, str):
        raise ValueError(f"An event from another process has a kind that is not a str: {kind!r}")
    try:
        cls = event_kind(kind)
    except LookupError as exc:
        raise ValueError(str(exc)) from None
    if cls.local_only:
        raise ValueError(f"Event kind {kind!r} runs only in the process that made it.")
    chain = message.get("chain") or []
    if not isinstance(chain, list) or len(chain) > MAX_CHAIN:
        raise ValueError(f"The call chain of an event must be a list of <= {MAX_CHAIN} tokens.")
    _check_chain(chain)
    name = message.get("name")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"An object name must be a str or None, not {type(name).__name__}.")
    return cls.from_wire(message.get("fields") or {}, chain=tuple(chain), name=name)
