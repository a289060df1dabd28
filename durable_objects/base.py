"""DurableObject: the class Django code subclasses, like a Model."""

from .namespace import Namespace, NamespaceDescriptor
from .options import Options
from .registry import registry

# Attributes of Stub itself; methods with these names are unreachable through a stub.
STUB_ATTRIBUTES = frozenset({"id", "name"})

HANDLERS = frozenset({"fetch", "alarm", "websocket_message", "websocket_close", "websocket_error"})


class DurableObjectBase(type):
    """Metaclass: reads Meta, sets ``_meta`` and ``objects``, registers the class."""

    def __new__(mcs, name, bases, attrs, **kwargs):
        parents = [base for base in bases if isinstance(base, DurableObjectBase)]
        if not parents:  # DurableObject itself
            return super().__new__(mcs, name, bases, attrs, **kwargs)
        meta = attrs.pop("Meta", None)
        cls = super().__new__(mcs, name, bases, attrs, **kwargs)
        parent_meta = next((p._meta for p in parents if hasattr(p, "_meta")), None)
        cls._meta = Options(meta, cls, parent_meta)
        if not cls._meta.abstract:
            reserved = HANDLERS | set(dir(DurableObject)) | {"objects"}
            cls.objects = NamespaceDescriptor(Namespace(cls, reserved=reserved))
            registry.register(cls)
        return cls


class DurableObject(metaclass=DurableObjectBase):
    """Base class of durable objects: one live instance per ID, with its own storage.

    Public methods (no leading underscore) are callable through a stub. Optional handlers:
    ``fetch(request)``, ``alarm(info)``, ``websocket_message(ws, message)``,
    ``websocket_close(ws, code, reason, was_clean)``, ``websocket_error(ws, error)``.
    """

    def __init__(self, ctx, env):
        self.ctx = ctx
        self.env = env

    @classmethod
    def check(cls, **kwargs):
        """Return system check errors for this class (run by ``manage.py check``)."""
        from django.core.checks import Error

        errors = []
        for name in sorted(STUB_ATTRIBUTES & set(dir(cls))):
            if callable(getattr(cls, name, None)):
                errors.append(
                    Error(
                        f"{cls.__name__}.{name}() cannot be called through a stub: "
                        f"stub.{name} is the stub's own attribute.",
                        hint="Rename the method.",
                        obj=cls,
                        id="durable_objects.E007",
                    )
                )
        return errors

    def __repr__(self):
        return f"<{type(self).__name__} {self.ctx.id if hasattr(self, 'ctx') else ''}>"
