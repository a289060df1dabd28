from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class DurableObjectsConfig(AppConfig):
    name = "durable_objects"
    verbose_name = "Durable Objects"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)

        # Event kinds register themselves on import, and a host must know each kind another
        # process may send it (the admin's kind comes with the admin's autodiscovery).
        from .alarms import events as _alarm_events  # noqa: F401
        from .backups import events as _backup_events  # noqa: F401
        from .sockets import events as _socket_events  # noqa: F401

        autodiscover_modules("objects")
