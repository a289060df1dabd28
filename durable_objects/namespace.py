"""``Cls.objects``: IDs and stubs for one DurableObject class."""

import inspect
from functools import cached_property

from .ids import DurableObjectId
from .stubs import Stub


class Namespace:
    """The manager on a DurableObject class: makes IDs and stubs, lists objects."""

    def __init__(self, cls, *, reserved=frozenset()):
        self.model = cls
        self.reserved = frozenset(reserved)  # names a stub never calls (handlers, base's)

    @property
    def label(self):
        return self.model._meta.label

    def id_from_name(self, name):
        """Return the ID for name: the same (class, name) always gives the same ID."""
        return DurableObjectId.from_name(self.label, name)

    def id_from_string(self, hex_string):
        """Parse a 64-hex ID; ValueError if it is malformed or belongs to another class."""
        return DurableObjectId.from_string(self.label, hex_string)

    def new_unique_id(self):
        """Return a new random ID."""
        return DurableObjectId.unique(self.label)

    def get(self, object_id):
        """Return a stub for the object (no I/O; the object activates on the first call)."""
        if isinstance(object_id, str):
            object_id = self.id_from_string(object_id)
        if not isinstance(object_id, DurableObjectId):
            raise TypeError(
                f"get() takes a DurableObjectId or its hex string, not {type(object_id).__name__}."
            )
        if object_id.label != self.label:
            raise ValueError(f"{object_id!r} is an ID of {object_id.label}, not of {self.label}.")
        return Stub(self, object_id)

    def get_by_name(self, name):
        """Return a stub for the object with this name."""
        return self.get(self.id_from_name(name))

    def all(self):
        """The IDs of every object of this class that has storage (from the catalog)."""
        from .listing import ObjectIdSet

        return ObjectIdSet(self)

    # -- copies ---------------------------------------------------------------------------

    def copy(self, source_id, target_id, bookmark=None):
        """Make the target object's database a copy of the source's; an ImportResult.

        Runs as an event of each live instance (an export of the source, an import into
        the target, which is reset). With bookmark (one of the source's bookmarks), the
        copy is of the source's state at that point, restored from its replica (needs
        REPLICATION). For async code, ``acopy()``.
        """
        from asgiref.sync import async_to_sync

        return async_to_sync(self.acopy)(source_id, target_id, bookmark=bookmark)

    async def acopy(self, source_id, target_id, bookmark=None):
        """The async twin of ``copy()``."""
        from .backups import acopy_object

        source, target = self._stub_id(source_id), self._stub_id(target_id)
        return await acopy_object(self.model, source, target, bookmark)

    def _stub_id(self, object_id):
        return self.get(object_id).id

    # -- what stubs may call -------------------------------------------------------------

    @cached_property
    def methods(self):
        """Names of the public methods a stub may call."""
        names = set()
        for name in dir(self.model):
            if name.startswith("_") or name in self.reserved:
                continue
            if callable(inspect.getattr_static(self.model, name, None)):
                names.add(name)
        return frozenset(names)

    def argument_label(self, method, index):
        """Name a method's positional argument by index (for error messages only)."""
        try:
            parameters = list(inspect.signature(getattr(self.model, method)).parameters)[1:]
        except (TypeError, ValueError):
            parameters = []
        if index < len(parameters):
            return f"argument {parameters[index]!r} of {self.model.__name__}.{method}()"
        return f"positional argument {index} of {self.model.__name__}.{method}()"

    def __repr__(self):
        return f"<Namespace {self.label}>"


class NamespaceDescriptor:
    """Makes ``objects`` available on the class only, as Django's ManagerDescriptor does."""

    def __init__(self, namespace):
        self.namespace = namespace

    def __get__(self, instance, owner=None):
        if instance is not None:
            raise AttributeError(
                f"objects isn't accessible via {type(instance).__name__} instances; "
                "use ctx.id inside the object."
            )
        return self.namespace
