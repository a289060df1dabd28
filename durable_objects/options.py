"""``Meta`` options of a DurableObject class, from a whitelist (as Django's Options)."""

import math
import re

from django.apps import apps

ALLOWED_OPTIONS = ("abstract", "label", "hibernate_after", "run_sync_on_thread", "verbose_name")
LABEL_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*")


class Options:
    """The ``_meta`` of a DurableObject class."""

    def __init__(self, meta, cls, parent_meta=None):
        given = {}
        if meta is not None:
            for name in vars(meta):
                if name.startswith("_"):
                    continue
                if name not in ALLOWED_OPTIONS:
                    raise TypeError(
                        f"{cls.__name__}.Meta has an unknown option {name!r}; allowed options: "
                        + ", ".join(ALLOWED_OPTIONS)
                    )
                given[name] = getattr(meta, name)
        self.abstract = bool(given.get("abstract", False))
        self.object_name = cls.__name__
        self.verbose_name = given.get("verbose_name", cls.__name__)
        self._hibernate_after = given.get(
            "hibernate_after", parent_meta._hibernate_after if parent_meta else None
        )
        if self._hibernate_after is not None:
            self._check_hibernate_after(cls, self._hibernate_after)
        # Sync handlers and methods on a worker thread, so a blocking one holds up only its
        # own object (docs/topics/events-and-transactions.md).
        self.run_sync_on_thread = given.get(
            "run_sync_on_thread", parent_meta.run_sync_on_thread if parent_meta else False
        )
        if not isinstance(self.run_sync_on_thread, bool):
            raise ValueError(
                f"{cls.__name__}.Meta.run_sync_on_thread must be True or False, not "
                f"{self.run_sync_on_thread!r}."
            )
        self.label = None
        if not self.abstract:
            self.label = given.get("label") or self._default_label(cls)
            if not isinstance(self.label, str) or not LABEL_RE.fullmatch(self.label):
                raise ValueError(
                    f"{cls.__name__}.Meta.label must look like 'app_label.ClassName' "
                    f"(letters, digits and underscores), not {self.label!r}."
                )
        self.app_label = self.label.split(".")[0] if self.label else None

    @staticmethod
    def _check_hibernate_after(cls, value):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(
                f"{cls.__name__}.Meta.hibernate_after must be a positive number of seconds, "
                f"not {value!r}."
            )

    @staticmethod
    def _default_label(cls):
        app_config = apps.get_containing_app_config(cls.__module__)
        if app_config is None:
            raise RuntimeError(
                f"DurableObject class {cls.__module__}.{cls.__name__} doesn't declare "
                "Meta.label and isn't in an application in INSTALLED_APPS."
            )
        return f"{app_config.label}.{cls.__name__}"

    @property
    def hibernate_after(self):
        """Seconds idle before the instance is dropped (Meta, else the setting)."""
        if self._hibernate_after is not None:
            return self._hibernate_after
        from durable_objects.conf import get_config

        return get_config()["HIBERNATE_AFTER"]

    def __repr__(self):
        return f"<Options for {self.label or self.object_name}>"
