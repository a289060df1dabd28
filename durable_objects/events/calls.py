"""The event kinds of calls: a method call, a fetch, and a function run in a test."""

from durable_objects import serialization

from .base import Event, check_size


class MethodCall(Event):
    """A call of a public method with serialized arguments; the result is serialized too."""

    __slots__ = ("method", "payload")

    kind = "call"

    def __init__(self, method, payload, **kwargs):
        super().__init__(**kwargs)
        self.method = method
        self.payload = payload

    def to_wire(self):
        return {"method": self.method, "payload": self.payload}

    def invoke(self, instance, activation):
        args, kwargs = serialization.loads(self.payload)
        return getattr(instance, self.method)(*args, **kwargs)

    def encode(self, result):
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

    def to_wire(self):
        return {"request": self.request}

    def invoke(self, instance, activation):
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
    local_only = True  # a Python function: it runs in the instance of this process

    def __init__(self, fn, **kwargs):
        super().__init__(**kwargs)
        self.fn = fn

    def invoke(self, instance, activation):
        return self.fn(instance, instance.ctx)

    def encode_error(self, exc):
        return exc  # the test sees its own exception, traceback included
