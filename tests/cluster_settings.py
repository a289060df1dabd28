"""Settings of the cluster tests' processes: the test settings on Redis, a shared database."""

import os

from durable_objects.conf import cluster_channel_layers
from tests.settings import *  # noqa: F403

REDIS_URL = os.environ["DO_TEST_REDIS_URL"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DO_TEST_DB"]}}
CHANNEL_LAYERS = cluster_channel_layers(REDIS_URL)
DURABLE_OBJECTS = {
    "STORAGE_ROOT": os.environ["DO_TEST_STORAGE_ROOT"],
    "PLACEMENT": "redis",
    "TRANSPORT_LAYER": "transport",
    "REDIS_URL": REDIS_URL,
    "LEASE_TTL": float(os.environ.get("DO_TEST_LEASE_TTL", "2")),
    "HOST_HEARTBEAT": 0.3,
    "CALL_TIMEOUT": 10.0,
    "CLUSTER_ROLE": os.environ.get("DO_TEST_ROLE", "auto"),
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "durable_objects": {"handlers": ["console"], "level": "WARNING"},
        "durable_objects.catalog": {"level": "ERROR"},
        "daphne": {"handlers": ["console"], "level": "ERROR"},
    },
}
