"""``Cls.objects.all()``: the IDs of every object with storage, from the catalog."""

from asgiref.sync import sync_to_async

from .ids import DurableObjectId


class ObjectIdSet:
    """Iterable (sync or async) of DurableObjectId, in ID order.

    Rows come from the catalog, plus what this process has not written to it yet.
    """

    def __init__(self, namespace):
        self._namespace = namespace

    def _pairs(self):
        from .models import ObjectRecord
        from .runtime.lifecycle import current_host

        label = self._namespace.label
        pairs = dict(ObjectRecord.objects.filter(label=label).values_list("object_id", "name"))
        host = current_host()
        if host is not None:
            for object_id, name in host.catalog.pending_for(label):
                pairs[object_id] = pairs.get(object_id) or name
        return sorted(pairs.items())

    def _ids(self, pairs):
        label = self._namespace.label
        return [DurableObjectId(label, object_id, name) for object_id, name in pairs]

    def __iter__(self):
        return iter(self._ids(self._pairs()))

    def __aiter__(self):
        return self._aiter()

    async def _aiter(self):
        for object_id in self._ids(await sync_to_async(self._pairs)()):
            yield object_id

    def count(self):
        return len(self._pairs())

    async def acount(self):
        return len(await sync_to_async(self._pairs)())

    def __repr__(self):
        return f"<ObjectIdSet {self._namespace.label}>"
