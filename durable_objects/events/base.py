"""The event base: one unit of work for one object, its kind's registry, current_event.

Every kind of event is a subclass of ``Event`` with a ``kind`` of its own, and registers
itself under that kind when its class is made. A kind that may cross processes says how:
``to_wire()`` gives the plain data that rebuilds it, ``from_wire()`` rebuilds it. A kind
that holds Python objects (a function, an exception) sets ``local_only = True`` and runs
only in the process that made it. ``transport/wire.py`` is the codec that uses these.
"""

import contextvars
import itertools
import os
import secrets
import warnings

from durable_objects.conf import get_config

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
    existing = _kinds.get(kind)
    if existing is not None and existing is not cls:
        same_place = (existing.__module__, existing.__qualname__) == (
            cls.__module__,
            cls.__qualname__,
        )
        if not same_place:
            raise RuntimeError(
                f"Conflicting event kind {kind!r}: {existing.__module__}."
                f"{existing.__qualname__} and {cls.__module__}.{cls.__qualname__}. "
                "Give one of them another kind."
            )
        warnings.warn(
            f"Event kind {kind!r} was already registered; reloading it.",
            RuntimeWarning,
            stacklevel=3,
        )
    _kinds[kind] = cls


class Event:
    """One unit of work for one object; its future receives the outcome after commit."""

    __slots__ = ("chain", "context", "future", "name", "outbox", "timer", "token")

    kind = None  # set by each concrete kind; a class without one of its own is abstract
    timed = True  # False: the event waits as long as it takes (socket events)
    local_only = False  # True: holds Python objects, never crosses processes

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

    def invoke(self, instance, activation):
        raise NotImplementedError("Event subclasses must define invoke()")

    def to_wire(self):
        """The keyword arguments that rebuild this event in another process (plain data)."""
        raise NotImplementedError(f"{type(self).__name__} must define to_wire()")

    @classmethod
    def from_wire(cls, fields, *, chain, name):
        """Rebuild an event from what ``to_wire()`` gave in another process."""
        return cls(**fields, chain=chain, name=name)

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
