"""Events: what an object handles one at a time (calls, fetches, test functions)."""

import contextvars
import itertools
import os
import secrets

from durable_objects import serialization

from .errors import encode_exception

# The event the current task is running, if any: (activation, event).
current_event = contextvars.ContextVar("durable_objects_current_event", default=None)

_PROCESS = f"{os.getpid():x}-{secrets.token_hex(3)}"
_counter = itertools.count(1)


def new_token():
    """A token naming one event in call chains, unique across processes."""
    return f"{_PROCESS}-{next(_counter)}"


class Event:
    """One unit of work for one object; its future receives the outcome after commit."""

    __slots__ = ("chain", "context", "future", "name", "outbox", "timer", "token")

    kind = "event"
    timed = True  # False: the event waits as long as it takes (socket events)

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

    def invoke(self, instance):
        raise NotImplementedError("Event subclasses must define invoke()")

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


class MethodCall(Event):
    """A call of a public method with serialized arguments; the result is serialized too."""

    __slots__ = ("method", "payload")

    kind = "call"

    def __init__(self, method, payload, **kwargs):
        super().__init__(**kwargs)
        self.method = method
        self.payload = payload

    def invoke(self, instance):
        args, kwargs = serialization.loads(self.payload)
        return getattr(instance, self.method)(*args, **kwargs)

    def encode(self, result):
        from durable_objects.stubs import check_size

        try:
            data = serialization.dumps(result)
        except TypeError as exc:
            raise TypeError(f"The result of {self.method}() is not serializable: {exc}") from None
        check_size(len(data), f"The result of {self.method}()")
        return data

    def decode(self, value):
        return serialization.loads(value)

    def __repr__(self):
        return f"<MethodCall {self.method}>"


class Fetch(Event):
    """An HTTP request forwarded to the object's ``fetch()``."""

    __slots__ = ("request",)

    kind = "fetch"

    def __init__(self, request, **kwargs):
        super().__init__(**kwargs)
        self.request = request

    def invoke(self, instance):
        from durable_objects.http import decode_request

        handler = getattr(instance, "fetch", None)
        if handler is None:
            raise NotImplementedError(f"{type(instance).__name__} does not define fetch().")
        return handler(decode_request(self.request))

    async def encode_async(self, result):
        from durable_objects.http import encode_response

        return serialization.dumps(await encode_response(result))

    def decode(self, value):
        from durable_objects.http import decode_response

        return decode_response(serialization.loads(value))


class RunInObject(Event):
    """A function run inside the live instance (``durable_objects.testing``)."""

    __slots__ = ("fn",)

    kind = "run"

    def __init__(self, fn, **kwargs):
        super().__init__(**kwargs)
        self.fn = fn

    def invoke(self, instance):
        return self.fn(instance, instance.ctx)

    def encode_error(self, exc):
        return exc  # the test sees its own exception, traceback included
