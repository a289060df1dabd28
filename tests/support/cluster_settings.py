"""Settings of the cluster tests' processes: the test settings on Redis, a shared database.

The machines rig (tests/support/machines.py) gives each machine its own database and
storage root, and a replica URL: DO_TEST_REPLICA_URL, DO_TEST_LITESTREAM_SOCKET and
DO_TEST_DURABILITY fill in DURABLE_OBJECTS["REPLICATION"].
"""

import os

from durable_objects.conf import cluster_channel_layers
from tests.support.settings import *  # noqa: F403

REDIS_URL = os.environ["DO_TEST_REDIS_URL"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DO_TEST_DB"]}}
CHANNEL_LAYERS = cluster_channel_layers(REDIS_URL)
DURABLE_OBJECTS = {
    "STORAGE_ROOT": os.environ["DO_TEST_STORAGE_ROOT"],
    "PLACEMENT": "redis",
    "TRANSPORT_LAYER": "transport",
    "REDIS_URL": REDIS_URL,
    "LEASE_TTL": float(os.environ.get("DO_TEST_LEASE_TTL", "2")),
    "HOST_HEARTBEAT": float(os.environ.get("DO_TEST_HOST_HEARTBEAT", "0.3")),
    "CALL_TIMEOUT": 10.0,
    "CLUSTER_ROLE": os.environ.get("DO_TEST_ROLE", "auto"),
    "ALARM_RETRY_BASE": float(os.environ.get("DO_TEST_ALARM_RETRY_BASE", "2")),
    "ALARM_MAX_RETRIES": int(os.environ.get("DO_TEST_ALARM_MAX_RETRIES", "6")),
    "ALARM_SWEEP_INTERVAL": float(os.environ.get("DO_TEST_ALARM_SWEEP_INTERVAL", "60")),
    # "none": the RQ workers deliver every alarm (no timer in the host).
    "ALARM_FALLBACK_DELAY": (
        None
        if os.environ.get("DO_TEST_ALARM_FALLBACK_DELAY") == "none"
        else float(os.environ.get("DO_TEST_ALARM_FALLBACK_DELAY", "2"))
    ),
}
if os.environ.get("DO_TEST_REPLICA_URL"):  # a machine of its own, replicated (issue 14)
    DURABLE_OBJECTS["REPLICATION"] = {
        "REPLICA_URL": os.environ["DO_TEST_REPLICA_URL"],
        "SOCKET": os.environ.get("DO_TEST_LITESTREAM_SOCKET"),
        "DURABILITY": os.environ.get("DO_TEST_DURABILITY", "replicated"),
        "SYNC_TIMEOUT": float(os.environ.get("DO_TEST_SYNC_TIMEOUT", "10")),
        "RETENTION": float(os.environ.get("DO_TEST_RETENTION", str(24 * 3600))),
    }
RQ_QUEUES = {"default": {"URL": REDIS_URL, "SERIALIZER": "rq.serializers.JSONSerializer"}}
# One process runs every job (no fork per job): its connection to the cluster stays up.
RQ = {"WORKER_CLASS": os.environ.get("DO_TEST_RQ_WORKER_CLASS", "rq.worker.SimpleWorker")}
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
