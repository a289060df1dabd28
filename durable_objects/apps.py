from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class DurableObjectsConfig(AppConfig):
    name = "durable_objects"
    verbose_name = "Durable Objects"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)

        autodiscover_modules("objects")
