"""Settings for the benchmark run: the embedded default on temporary directories."""

import os
import tempfile
from pathlib import Path

from durable_objects.conf import cluster_channel_layers

WORK_DIR = Path(os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="do-bench-"))

SECRET_KEY = "benchmarks-not-secret"
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "benchmarks.urls"  # the web benchmark's views (benchmarks/web.py)
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "channels",
    "durable_objects",
    "benchmarks",
]
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": WORK_DIR / "default.sqlite3"}
}
# Ours for the objects; the stock in-memory layer for the WebSocket baseline.
CHANNEL_LAYERS = {
    "default": {"BACKEND": "durable_objects.layers.InProcessChannelLayer"},
    "stock": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
}
# Nothing hibernates during a run, so "active then idle" means what it says.
DURABLE_OBJECTS = {"STORAGE_ROOT": WORK_DIR / "objects", "HIBERNATE_AFTER": 3600}
if os.environ.get("BENCH_SYNCHRONOUS"):  # the web benchmark's CPU figures, without fsyncs
    DURABLE_OBJECTS["SYNCHRONOUS"] = os.environ["BENCH_SYNCHRONOUS"]
if os.environ.get("BENCH_SHARD_PAGE_SIZE"):  # python -m benchmarks.machines --page-size
    DURABLE_OBJECTS["SHARD_PAGE_SIZE"] = int(os.environ["BENCH_SHARD_PAGE_SIZE"])
if os.environ.get("BENCH_MAX_OPEN_SHARDS"):  # to see what reopening shards costs
    DURABLE_OBJECTS["MAX_OPEN_SHARDS"] = int(os.environ["BENCH_MAX_OPEN_SHARDS"])
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"durable_objects.catalog": {"level": "ERROR"}},
}

# The cluster benchmark (benchmarks/cluster.py) runs its processes on Redis.
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL")
if BENCH_REDIS_URL:
    CHANNEL_LAYERS = cluster_channel_layers(BENCH_REDIS_URL)
    DURABLE_OBJECTS = {
        **DURABLE_OBJECTS,
        "PLACEMENT": "redis",
        "TRANSPORT_LAYER": "transport",
        "REDIS_URL": BENCH_REDIS_URL,
        "LEASE_TTL": 2.0,
        "HOST_HEARTBEAT": 0.3,
        "CLUSTER_ROLE": os.environ.get("BENCH_ROLE", "auto"),
    }
    # Alarms (benchmarks/alarms.py): RQ through django-rq, one process per worker.
    INSTALLED_APPS = [*INSTALLED_APPS, "django_rq"]
    RQ_QUEUES = {
        "default": {"URL": BENCH_REDIS_URL, "SERIALIZER": "rq.serializers.JSONSerializer"}
    }
    RQ = {"WORKER_CLASS": "rq.worker.SimpleWorker"}
    # "workers": no timer in the host, the RQ workers deliver every alarm at its time.
    if os.environ.get("BENCH_ALARM_DELIVERY") == "workers":
        DURABLE_OBJECTS["ALARM_FALLBACK_DELAY"] = None

# The machines benchmark (benchmarks/machines.py): Litestream replication of every shard.
if os.environ.get("BENCH_REPLICA_URL"):
    DURABLE_OBJECTS["REPLICATION"] = {
        "REPLICA_URL": os.environ["BENCH_REPLICA_URL"],
        "SOCKET": os.environ["BENCH_LITESTREAM_SOCKET"],
        "DURABILITY": os.environ.get("BENCH_DURABILITY", "replicated"),
        "SYNC_TIMEOUT": 10.0,
    }
if os.environ.get("BENCH_STORAGE_ROOT"):  # a machine of its own
    DURABLE_OBJECTS["STORAGE_ROOT"] = Path(os.environ["BENCH_STORAGE_ROOT"])
