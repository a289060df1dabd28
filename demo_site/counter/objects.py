from durable_objects import DurableObject


class Counter(DurableObject):
    """A named counter: the smallest durable object, one per name."""

    def increment(self, by=1):
        value = self.ctx.storage.get("value", 0) + by
        self.ctx.storage.put("value", value)
        return value

    def value(self):
        return self.ctx.storage.get("value", 0)
