"""The event kinds of calls: a method call, a fetch, and a function run in a test."""

from durable_objects import serialization

from .base import Event, WireField, check_size, wire_limit

MAX_HEADERS = 500  # headers of a request that crosses processes


def check_request(data):
    """Refuse, with a ValueError, a request dict that ``http.decode_request`` cannot take."""
    expected = {"method", "path", "query", "headers", "body"}
    if set(data) != expected:
        raise ValueError(f"must have exactly the keys {sorted(expected)}")
    for key in ("method", "path", "query"):
        if not isinstance(data[key], str):
            raise ValueError(f"has a {key!r} that is not a str")
    if not isinstance(data["body"], bytes):
        raise ValueError("has a 'body' that is not bytes")
    check_size(len(data["body"]), "The request body")
    headers = data["headers"]
    if not isinstance(headers, dict) or len(headers) > MAX_HEADERS:
        raise ValueError(f"must have 'headers', a dict of at most {MAX_HEADERS} entries")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ValueError("has headers that are not str: str")


def _check_method_name(name):
    if not name.isidentifier():
        raise ValueError(f"{name[:100]!r} is not a method name")


class MethodCall(Event):
    """A call of a public method with serialized arguments; the result is serialized too."""

    __slots__ = ("method", "payload")

    kind = "call"
    wire_fields = {
        "method": WireField(str, max_size=200, check=_check_method_name),
        "payload": WireField(bytes, max_size=wire_limit("MAX_CALL_SIZE")),
    }

    def __init__(self, method, payload, **kwargs):
        super().__init__(**kwargs)
        self.method = method
        self.payload = payload

    def to_wire(self):
        return {"method": self.method, "payload": self.payload}

    def check_for(self, cls):
        """Refuse a method a stub could not call: private, a dunder, a handler, not one."""
        if self.method not in cls.objects.methods:
            raise AttributeError(
                f"{cls._meta.label} has no public method {self.method[:100]!r} to call "
                "through a stub."
            )

    def invoke(self, instance, activation):
        self.check_for(activation.cls)
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
    wire_fields = {"request": WireField(dict, max_size=None, check=check_request)}

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
