"""The registry of DurableObject classes, keyed by label."""

import warnings


class Registry:
    """Every concrete DurableObject class, by ``"<app_label>.<ClassName>"``."""

    def __init__(self):
        self._classes = {}

    def register(self, cls):
        label = cls._meta.label
        existing = self._classes.get(label)
        if existing is not None and existing is not cls:
            same_place = (existing.__module__, existing.__qualname__) == (
                cls.__module__,
                cls.__qualname__,
            )
            if not same_place:
                raise RuntimeError(
                    f"Conflicting DurableObject label {label!r}: {existing.__module__}."
                    f"{existing.__qualname__} and {cls.__module__}.{cls.__qualname__}. "
                    "Rename one class or give it Meta.label."
                )
            warnings.warn(
                f"DurableObject {label!r} was already registered; reloading it.",
                RuntimeWarning,
                stacklevel=3,
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
