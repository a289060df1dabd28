"""Stub: attribute access becomes a call on the one live instance of an object."""

from functools import partial

from asgiref.sync import markcoroutinefunction

from durable_objects.events.base import check_size
from durable_objects.events.calls import Fetch, MethodCall

from . import serialization


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

        data = encode_request(request)
        check_size(len(data["body"]), "The request body and headers")
        return await _call(self, Fetch(data, name=self.id.name))

    def __repr__(self):
        return f"<Stub {self.id!r}>"

    def __eq__(self, other):
        return isinstance(other, Stub) and other.id == self.id

    def __hash__(self):
        return hash(self.id)


class RemoteMethod:
    """A bound method of a stub; calling it serializes the arguments at once.

    A TypeError for an argument that cannot be serialized is raised by the call itself,
    before anything is awaited; later changes to the arguments do not reach the object.
    """

    __slots__ = ("name", "stub")

    def __init__(self, stub, name):
        self.stub = stub
        self.name = name

    @markcoroutinefunction  # async_to_sync(stub.method) expects a coroutine function
    def __call__(self, *args, **kwargs):
        namespace = self.stub._namespace
        payload = serialization.dumps_arguments(
            args, kwargs, describe=partial(namespace.argument_label, self.name)
        )
        check_size(len(payload), f"The arguments of {self.name}()")
        return _call(self.stub, MethodCall(self.name, payload, name=self.stub.id.name))

    def __repr__(self):
        return f"<RemoteMethod {self.stub._namespace.label}.{self.name} of {self.stub.id}>"


async def _call(stub, event):
    from .runtime.calls import call

    return await call(stub._namespace.model, stub.id, event)
