"""The wire codec: an event as plain data for another process, and back.

An event crosses as ``{"kind", "fields", "chain"}``: its kind, what its ``to_wire()``
gives, and its call chain. The receiver looks the kind up among the Event subclasses
registered in its process (``events/base.py``), so the modules defining them must be
imported there: the app config imports the runtime's own, Django's admin autodiscovery
the admin's, and a project its own where its objects are.
"""

from durable_objects.events.base import event_kind


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
    kind = message["kind"]
    try:
        cls = event_kind(kind)
    except LookupError as exc:
        raise ValueError(str(exc)) from None
    if cls.local_only:
        raise ValueError(f"Event kind {kind!r} runs only in the process that made it.")
    chain = tuple(message.get("chain") or ())
    return cls.from_wire(message.get("fields") or {}, chain=chain, name=message.get("name"))
