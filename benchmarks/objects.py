from durable_objects import DurableObject


class BenchCounter(DurableObject):
    def noop(self):
        return 1

    def increment(self):
        value = self.ctx.storage.get("value", 0) + 1
        self.ctx.storage.put("value", value)
        return value

    def value(self):
        return self.ctx.storage.get("value", 0)
