"""The event base: one unit of work for one object, its kind's registry, current_event.

Every kind of event is a subclass of ``Event`` with a ``kind`` of its own, and registers
itself under that kind when its class is made. A kind that may cross processes says how:
``to_wire()`` gives the plain data that rebuilds it, ``from_wire()`` rebuilds it. A kind
that holds Python objects (a function, an exception) sets ``local_only = True`` and runs
only in the process that made it. ``transport/wire.py`` is the codec that uses these.

What arrives from another process is not trusted to be well formed (anyone who can write
to the channel layer's Redis can send anything), so each kind declares its wire fields
(``wire_fields``: a ``WireField`` per keyword argument) and ``from_wire()`` refuses, with
a ``ValueError``, fields that are missing, unknown, of another type or too large.
"""

import contextvars
import itertools
import os
import secrets

from durable_objects.conf import get_config
from durable_objects.registry import refuse_conflict

from .errors import encode_exception

# The event the current task is running, if any: (activation, event).
current_event = contextvars.ContextVar("durable_objects_current_event", default=None)

_PROCESS = f"{os.getpid():x}-{secrets.token_hex(3)}"
_counter = itertools.count(1)

_kinds = {}  # kind -> Event subclass, filled by Event.__init_subclass__


def new_token():
    """A token naming one event in call chains, unique across processes."""
    return f"{_PROCESS}-{next(_counter)}"


def check_size(size, what):
    """Refuse a serialized payload over MAX_CALL_SIZE with a ValueError."""
    limit = get_config()["MAX_CALL_SIZE"]
    if size > limit:
        raise ValueError(
            f"{what} are {size} bytes serialized; the limit is {limit} bytes (MAX_CALL_SIZE)."
        )


MAX_WIRE_TEXT = 1024  # characters of a short text field on the wire (ids, channels, names)


def wire_limit(setting):
    """A size limit read from a setting at validation time, for ``WireField(max_size=)``."""
    return lambda: get_config()[setting]


class WireField:
    """One keyword argument of an event kind as it crosses processes.

    ``types`` are the types its value may have (``None`` for None; ``int`` excludes
    ``bool``); ``max_size`` bounds the length of a str, bytes, list or dict (a number, or
    a callable such as ``wire_limit("MAX_CALL_SIZE")``); ``check(value)`` may refuse more
    with a ValueError (the shape of a dict, a range).
    """

    __slots__ = ("check", "max_size", "required", "types")

    def __init__(self, *types, required=True, max_size=MAX_WIRE_TEXT, check=None):
        self.types = tuple(type(None) if t is None else t for t in types)
        self.required = required
        self.max_size = max_size
        self.check = check

    def validate(self, value):
        """Return None if value fits, else what is wrong with it (text)."""
        if not isinstance(value, self.types) or (
            isinstance(value, bool) and bool not in self.types
        ):
            names = " or ".join(_type_name(t) for t in self.types)
            return f"must be {names}, not {_type_name(type(value))}"
        limit = self.max_size() if callable(self.max_size) else self.max_size
        sized = isinstance(value, str | bytes | list | dict)
        if limit is not None and sized and len(value) > limit:
            return f"is {len(value)} long; the limit is {limit}"
        if self.check is not None and value is not None:
            try:
                self.check(value)
            except (TypeError, ValueError) as exc:
                return str(exc)
        return None


def _type_name(cls):
    return "None" if cls is type(None) else cls.__name__


def check_wire_fields(cls, fields):
    """Refuse fields that ``cls.wire_fields`` does not describe, with a ValueError."""
    where = f"A {cls.kind!r} event from another process"
    if not isinstance(fields, dict) or not all(isinstance(key, str) for key in fields):
        raise ValueError(f"{where} has fields that are not a dict with text keys.")
    schema = cls.wire_fields
    if schema is None:  # a kind of a project's own that declares nothing: the constructor
        return
    unknown, missing, wrong = _schema_problem(schema, fields)
    if unknown:
        raise ValueError(f"{where} has unknown fields {unknown}.")
    if missing is not None:
        raise ValueError(f"{where} lacks the field {missing!r}.")
    if wrong is not None:
        raise ValueError(f"{where}: the field {wrong[0]!r} {wrong[1]}.")


def _schema_problem(schema, data):
    """(unknown keys, a missing required key or None, (key, problem) or None) of data."""
    unknown = sorted(str(key) for key in set(data) - set(schema))
    if unknown:
        return unknown, None, None
    for name, field in schema.items():
        if name not in data:
            if field.required:
                return [], name, None
            continue
        problem = field.validate(data[name])
        if problem is not None:
            return [], None, (name, problem)
    return [], None, None


ENCODED_ERROR = {
    "type": WireField(str),
    "message": WireField(str, max_size=64 * 1024),
    "args": WireField(list, None, max_size=100),
    "retryable": WireField(bool, required=False),
    "traceback": WireField(str, max_size=256 * 1024),
}


def check_encoded_error(data):
    """Refuse, with a ValueError, an error that ``errors.decode_exception`` cannot take."""
    if not isinstance(data, dict):
        raise ValueError(f"an encoded error must be a dict, not {_type_name(type(data))}")
    unknown, missing, wrong = _schema_problem(ENCODED_ERROR, data)
    if unknown:
        raise ValueError(f"an encoded error has unknown keys {unknown}")
    if missing is not None:
        raise ValueError(f"an encoded error lacks {missing!r}")
    if wrong is not None:
        raise ValueError(f"an encoded error's {wrong[0]!r} {wrong[1]}")


def event_kind(kind):
    """The Event subclass registered under kind; LookupError if none is."""
    try:
        return _kinds[kind]
    except KeyError:
        raise LookupError(
            f"Unknown event kind {kind!r}: no Event subclass of that kind is imported in "
            "the process that received it. Import the module that defines it when the "
            "app is ready (in an AppConfig.ready())."
        ) from None


def _register(cls):
    kind = cls.kind
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"{cls.__qualname__}.kind must be a non-empty string, not {kind!r}.")
    if not cls.local_only and cls.to_wire is Event.to_wire:
        raise TypeError(
            f"{cls.__qualname__} (kind {kind!r}) must define to_wire() to cross processes, "
            "or set local_only = True."
        )
    refuse_conflict(
        _kinds.get(kind),
        cls,
        conflict=f"event kind {kind!r}",
        fix="Give one of them another kind.",
        reloaded=f"Event kind {kind!r}",
    )
    _kinds[kind] = cls


class Event:
    """One unit of work for one object; its future receives the outcome after commit."""

    __slots__ = ("chain", "context", "future", "name", "outbox", "timer", "token")

    kind = None  # set by each concrete kind; a class without one of its own is abstract
    timed = True  # False: the event waits as long as it takes (socket events)
    # Seconds it may wait in the queue before the object counts as stuck and is reset
    # (the admin's evict); None: it waits its turn however long.
    force_after = None
    local_only = False  # True: holds Python objects, never crosses processes
    # name -> WireField for each keyword argument to_wire() gives; None: not declared
    # (the constructor alone checks what arrives; declare them for a kind that crosses).
    wire_fields = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            _register(cls)

    def __init__(self, *, chain=(), name=None):
        self.chain = chain
        self.context = None  # the caller's contextvars, copied when the call is made
        self.name = name
        self.future = None
        self.timer = None
        self.token = None
        self.outbox = None  # socket messages held until the event's writes are durable

    def call_chain(self):
        """The chain an outgoing call made by this event carries."""
        if self.token is None:
            self.token = new_token()
        return (*self.chain, self.token)

    def check_for(self, cls):
        """Refuse, with an exception for the caller, an event cls must not run (wire)."""

    def invoke(self, instance, activation):
        raise NotImplementedError("Event subclasses must define invoke()")

    def to_wire(self):
        """The keyword arguments that rebuild this event in another process (plain data)."""
        raise NotImplementedError(f"{type(self).__name__} must define to_wire()")

    @classmethod
    def from_wire(cls, fields, *, chain, name):
        """Rebuild an event from what ``to_wire()`` gave in another process.

        ValueError if the fields do not fit ``wire_fields`` or the constructor refuses them.
        """
        check_wire_fields(cls, fields)
        try:
            return cls(**fields, chain=chain, name=name)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"A {cls.kind!r} event from another process: {exc}") from None

    def encode(self, result):
        return result

    def encode_error(self, exc):
        return encode_exception(exc)

    def decode(self, value):
        return value

    def released(self, outcome, activation):
        """The outcome as delivered, after the commit; a hook for socket connects."""
        return outcome

    def __repr__(self):
        return f"<{type(self).__name__}>"
