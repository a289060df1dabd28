"""Settings of the cluster tests' processes: the test settings on Redis, a shared database."""

import os

from tests.settings import *  # noqa: F403

REDIS_URL = os.environ["DO_TEST_REDIS_URL"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DO_TEST_DB"]}}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # No socket timeout: channels-redis waits for messages with a 5 s blocking
        # read, which redis-py's default read timeout would break every 5 s.
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}]},
    },
    # Calls between processes: Redis pub/sub, one round trip a message.
    "transport": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}]},
    },
}
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
