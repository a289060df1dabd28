"""The test suite's app: label ``tests``, its objects in tests/support/."""

from django.apps import AppConfig


class TestsConfig(AppConfig):
    name = "tests"

    def ready(self):
        # The objects live in tests/support/, not in tests/objects.py where autodiscovery
        # looks; every process (runobjects hosts and rqworkers too) registers them here.
        from tests.support import objects  # noqa: F401
