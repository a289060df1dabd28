"""Settings of the demo site: the embedded default, one process, no Redis."""

import os
from pathlib import Path

from durable_objects.conf import cluster_channel_layers

BASE_DIR = Path(__file__).resolve().parent.parent
# Where the demo keeps its database and its objects' shards.
VAR_DIR = Path(os.environ.get("DEMO_VAR_DIR") or BASE_DIR / "var")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
# A machine of `./scripts/cluster --machines N` is also reached at its own address.
ALLOWED_HOSTS += [host for host in os.environ.get("DEMO_ALLOWED_HOSTS", "").split(",") if host]

INSTALLED_APPS = [
    "daphne",  # first, so runserver serves ASGI
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "durable_objects",
    "demo_site.counter",
    "demo_site.chat",
    "demo_site.board",
    "demo_site.poll",
    "demo_site.flights",
    "demo_site.trial",
    "demo_site.ratelimit",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_site.urls"
ASGI_APPLICATION = "demo_site.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DEMO_DATABASE") or VAR_DIR / "demo.sqlite3",
    }
}

CHANNEL_LAYERS = {"default": {"BACKEND": "durable_objects.layers.InProcessChannelLayer"}}

DURABLE_OBJECTS = {
    "STORAGE_ROOT": os.environ.get("DEMO_STORAGE_ROOT") or VAR_DIR / "durable_objects",
    # Per-client limits (docs/ref/settings.md): sockets one address holds open, and
    # objects without storage it may wake (a page's socket, a counter, a flight) a minute.
    "WEBSOCKET_MAX_PER_CLIENT": int(os.environ.get("DEMO_MAX_SOCKETS_PER_CLIENT", "64")),
    "NEW_OBJECTS_PER_CLIENT_PER_MINUTE": int(os.environ.get("DEMO_NEW_OBJECTS_PER_MINUTE", "30")),
}

# The cluster shape (./scripts/cluster): the same code, with Redis for the placement
# and the channel layer. docs/howto/run-a-cluster.md.
CLUSTER_REDIS_URL = os.environ.get("DEMO_CLUSTER_REDIS_URL")
if CLUSTER_REDIS_URL:
    CHANNEL_LAYERS = cluster_channel_layers(CLUSTER_REDIS_URL)
    DURABLE_OBJECTS = {
        **DURABLE_OBJECTS,
        "PLACEMENT": "redis",
        "TRANSPORT_LAYER": "transport",
        "REDIS_URL": CLUSTER_REDIS_URL,
    }
    # Alarms (the trial demo) are RQ jobs, JSON, run by `manage.py rqworker
    # --with-scheduler --serializer rq.serializers.JSONSerializer`.
    INSTALLED_APPS = [*INSTALLED_APPS, "django_rq"]
    RQ_QUEUES = {
        "default": {
            "URL": CLUSTER_REDIS_URL,
            "SERIALIZER": "rq.serializers.JSONSerializer",  # jobs as JSON, never pickles
        }
    }
    # One worker process runs every job, without a fork per job, so its connection to
    # the cluster stays up between alarms.
    RQ = {"WORKER_CLASS": "rq.worker.SimpleWorker"}

# Each machine of `./scripts/cluster --machines N` replicates its shards to SeaweedFS with
# its own Litestream daemon (docs/howto/run-a-cluster.md#several-machines); credentials
# come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
if os.environ.get("DEMO_REPLICA_URL"):
    DURABLE_OBJECTS["REPLICATION"] = {
        "REPLICA_URL": os.environ["DEMO_REPLICA_URL"],
        "SOCKET": os.environ.get("DEMO_LITESTREAM_SOCKET"),
        "DURABILITY": os.environ.get("DEMO_DURABILITY", "replicated"),
    }

# How long the trial subscription demo's trials last by default, in seconds (the page
# lets each trial choose, from 3 seconds to a day).
DEMO_TRIAL_SECONDS = int(os.environ.get("DEMO_TRIAL_SECONDS", "20"))

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
# runserver's static files: a path that leaves the static directories ("..%2F") is a
# 404, not the 500 Django's finders give (demo_site/staticfinders.py).
STATICFILES_FINDERS = [
    "demo_site.staticfinders.FileSystemFinder",
    "demo_site.staticfinders.AppDirectoriesFinder",
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

VAR_DIR.mkdir(parents=True, exist_ok=True)
