"""The registry of DurableObject classes, keyed by label."""

import warnings


def refuse_conflict(existing, cls, *, conflict, fix, reloaded):
    """Refuse cls for a name existing holds, unless cls is existing defined again.

    A class of the same module and qualified name is a reload (Django's autoreloader, a
    test importing a module twice): it replaces the old one with a warning.
    """
    if existing is None or existing is cls:
        return
    if (existing.__module__, existing.__qualname__) != (cls.__module__, cls.__qualname__):
        raise RuntimeError(
            f"Conflicting {conflict}: {existing.__module__}.{existing.__qualname__} and "
            f"{cls.__module__}.{cls.__qualname__}. {fix}"
        )
    warnings.warn(
        f"{reloaded} was already registered; reloading it.", RuntimeWarning, stacklevel=4
    )


class Registry:
    """Every concrete DurableObject class, by ``"<app_label>.<ClassName>"``."""

    def __init__(self):
        self._classes = {}

    def register(self, cls):
        label = cls._meta.label
        refuse_conflict(
            self._classes.get(label),
            cls,
            conflict=f"DurableObject label {label!r}",
            fix="Rename one class or give it Meta.label.",
            reloaded=f"DurableObject {label!r}",
        )
        self._classes[label] = cls

    def get(self, label):
        try:
            return self._classes[label]
        except KeyError:
            raise LookupError(f"No DurableObject class with label {label!r}.") from None

    def all(self):
        return list(self._classes.values())

    def unregister(self, label):
        """Remove a class (for tests that define classes of their own)."""
        self._classes.pop(label, None)


registry = Registry()
