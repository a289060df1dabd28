"""Settings for the test suite: the embedded default with a private storage root."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
SECRET_KEY = "tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "channels",
    "django_rq",
    "durable_objects",
    "tests",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.request",
            ]
        },
    }
]
ROOT_URLCONF = "tests.support.urls"
_TEST_DB_DIR = tempfile.mkdtemp(prefix="durable-objects-test-db-")
atexit.register(shutil.rmtree, _TEST_DB_DIR, True)
# The test database is a file, not SQLite's shared-cache memory: there a write that meets
# another thread's (the catalog's) fails at once with "table is locked", here it waits.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": ":memory:",
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF"},
        "TEST": {"NAME": os.path.join(_TEST_DB_DIR, "test.sqlite3")},
    }
}
CHANNEL_LAYERS = {"default": {"BACKEND": "durable_objects.layers.InProcessChannelLayer"}}
if os.environ.get("DO_TEST_COUNTING_LAYER"):  # the layer says what it carried (test_sockets_local)
    CHANNEL_LAYERS = {"default": {"BACKEND": "tests.support.layers.CountingChannelLayer"}}
DURABLE_OBJECTS = {
    "STORAGE_ROOT": os.environ.get("DO_TEST_STORAGE_ROOT")
    or tempfile.mkdtemp(prefix="durable-objects-tests-"),
    "CATALOG_FLUSH_INTERVAL": 0.1,
}
if os.environ.get("DO_TEST_MAX_CALL_SIZE"):  # a small limit for the servers' body tests
    DURABLE_OBJECTS["MAX_CALL_SIZE"] = int(os.environ["DO_TEST_MAX_CALL_SIZE"])
# django_rq needs its queues named; the embedded tests never reach this Redis.
RQ_QUEUES = {
    "default": {
        "URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "SERIALIZER": "rq.serializers.JSONSerializer",  # no pickle (check E019)
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Tests without database access make the catalog's writes fail by design; keep them quiet.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"durable_objects.catalog": {"level": "ERROR"}},
}
