"""``env``: what an object receives beside ``ctx``: settings and every class's namespace."""


class Env:
    """The ``env`` an object receives: settings and the namespaces of every class."""

    def __init__(self):
        from django.conf import settings

        self.settings = settings

    def namespace(self, label):
        """Return ``<Class>.objects`` for a label such as ``"chat.ChatRoom"``."""
        from durable_objects.registry import registry

        return registry.get(label).objects

    def __getattr__(self, name):
        from durable_objects.registry import registry

        for cls in registry.all():
            if cls.__name__ == name:
                return cls.objects
        raise AttributeError(f"No DurableObject class named {name!r} is installed.")
