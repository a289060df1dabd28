"""Events as plain data for the transport, and back.

An event kind that may cross processes registers here with ``register()``: its class
has a ``kind``, a ``wire_fields()`` method giving the keyword arguments that rebuild it,
and a constructor taking those plus ``chain`` and ``name``.
"""

from durable_objects.runtime.events import Fetch, MethodCall

_kinds = {}


def register(cls):
    """Let events of cls cross processes (a class decorator)."""
    _kinds[cls.kind] = cls
    return cls


def _load_kinds():
    # Modules whose events cross processes register them when they are imported.
    from durable_objects import inspection as _admin_events  # noqa: F401
    from durable_objects.alarms import events as _alarm_events  # noqa: F401
    from durable_objects.sockets import events as _socket_events  # noqa: F401


def _kind(name):
    cls = _kinds.get(name)
    if cls is None:
        _load_kinds()
        cls = _kinds.get(name)
    return cls


def event_to_wire(event):
    """The fields of event another process needs to run it (msgpack-serializable)."""
    if isinstance(event, MethodCall):
        data = {"kind": "call", "method": event.method, "payload": event.payload}
    elif isinstance(event, Fetch):
        data = {"kind": "fetch", "request": event.request}
    elif _kind(event.kind) is type(event):
        data = {"kind": event.kind, "fields": event.wire_fields()}
    else:
        raise TypeError(
            f"A {type(event).__name__} cannot be sent to another process; "
            "run_in_durable_object() needs the object in this process."
        )
    data["chain"] = list(event.chain)
    return data


def event_from_wire(message):
    chain = tuple(message.get("chain") or ())
    name = message.get("name")
    kind = message["kind"]
    if kind == "call":
        return MethodCall(message["method"], message["payload"], chain=chain, name=name)
    if kind == "fetch":
        return Fetch(message["request"], chain=chain, name=name)
    cls = _kind(kind)
    if cls is not None:
        return cls(**message["fields"], chain=chain, name=name)
    raise ValueError(f"Unknown event kind {kind!r}.")
