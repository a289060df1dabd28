"""Events as plain data for the transport, and back."""

from durable_objects.runtime.events import Fetch, MethodCall


def _socket_kinds():
    from durable_objects.sockets import events

    return {
        cls.kind: cls
        for cls in (
            events.SocketConnect,
            events.SocketMessage,
            events.SocketClose,
            events.SocketError,
        )
    }


def event_to_wire(event):
    """The fields of event another process needs to run it (msgpack-serializable)."""
    if isinstance(event, MethodCall):
        data = {"kind": "call", "method": event.method, "payload": event.payload}
    elif isinstance(event, Fetch):
        data = {"kind": "fetch", "request": event.request}
    elif event.kind in _socket_kinds():
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
    socket_event = _socket_kinds().get(kind)
    if socket_event is not None:
        return socket_event(**message["fields"], chain=chain, name=name)
    raise ValueError(f"Unknown event kind {kind!r}.")
