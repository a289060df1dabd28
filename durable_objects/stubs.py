"""Stub: attribute access becomes a call on the one live instance of an object."""

from functools import partial

from . import serialization
from .conf import get_config
from .runtime.events import Fetch, MethodCall


class Stub:
    """A handle on one object; making one does no I/O.

    ``await stub.method(*args)`` runs ``method`` inside the live instance and returns its
    result by value; from sync code use ``async_to_sync(stub.method)(*args)``.
    """

    __slots__ = ("_namespace", "id")

    def __init__(self, namespace, object_id):
        self._namespace = namespace
        self.id = object_id

    @property
    def name(self):
        return self.id.name

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._namespace.methods:
            raise AttributeError(
                f"{self._namespace.label} has no public method {name!r} to call through a stub."
            )
        return RemoteMethod(self, name)

    async def fetch(self, request):
        """Send a Django HttpRequest (or a path) to the object's fetch(); return its response."""
        from .http import encode_request

        event = Fetch(encode_request(request), name=self.id.name)
        return await _call(self, event)

    def __repr__(self):
        return f"<Stub {self.id!r}>"

    def __eq__(self, other):
        return isinstance(other, Stub) and other.id == self.id

    def __hash__(self):
        return hash(self.id)


class RemoteMethod:
    """A bound method of a stub; calling it serializes the arguments at once."""

    __slots__ = ("name", "stub")

    def __init__(self, stub, name):
        self.stub = stub
        self.name = name

    async def __call__(self, *args, **kwargs):
        namespace = self.stub._namespace
        payload = serialization.dumps_arguments(
            args, kwargs, describe=partial(namespace.argument_label, self.name)
        )
        limit = get_config()["MAX_CALL_SIZE"]
        if len(payload) > limit:
            raise ValueError(
                f"The arguments of {self.name}() are {len(payload)} bytes serialized; "
                f"the limit is {limit} bytes (MAX_CALL_SIZE)."
            )
        return await _call(self.stub, MethodCall(self.name, payload, name=self.stub.id.name))

    def __repr__(self):
        return f"<RemoteMethod {self.stub._namespace.label}.{self.name} of {self.stub.id}>"


async def _call(stub, event):
    from .runtime.host import call

    return await call(stub._namespace.model, stub.id, event)
