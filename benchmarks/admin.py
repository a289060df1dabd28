"""Admin figures: ``python -m benchmarks.admin [--quick]`` (also part of the full run).

(h) The object list with 100,000 catalog rows, and one object's page with 10,000
key-value entries: p50 of 20 loads each through Django's test client (the whole
request in process: middleware, the view, the object's event, the template; no network).

It runs in a process of its own with settings of its own (``configure()``), because the
other benchmarks' settings have no admin, sessions or messages.
"""

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOADS = 20


def row(label, value, target=""):
    return f"{label:<58} {value:>16}  {target}"


def verdict(ok):
    return "PASS" if ok else "MISS"


def configure(work_dir):
    from django.conf import settings

    settings.configure(
        SECRET_KEY="benchmarks-not-secret",
        DEBUG=False,
        USE_TZ=True,
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "channels",
            "durable_objects",
            "benchmarks",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        ROOT_URLCONF=__name__,
        STATIC_URL="/static/",
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(work_dir / "default.sqlite3"),
            }
        },
        CHANNEL_LAYERS={"default": {"BACKEND": "durable_objects.layers.InProcessChannelLayer"}},
        DURABLE_OBJECTS={"STORAGE_ROOT": str(work_dir / "objects"), "HIBERNATE_AFTER": 3600},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        LOGGING={
            "version": 1,
            "disable_existing_loggers": False,
            "loggers": {"durable_objects.catalog": {"level": "ERROR"}},
        },
    )


def __getattr__(name):
    # This module is also the child's ROOT_URLCONF; its URLs need the configured settings.
    if name == "urlpatterns":
        from django.contrib import admin
        from django.urls import path

        return [path("admin/", admin.site.urls)]
    raise AttributeError(name)


def fill_catalog(count):
    from datetime import UTC, datetime, timedelta

    from durable_objects.models import ObjectRecord

    now = datetime.now(UTC)
    rows = [
        ObjectRecord(
            label="benchmarks.BenchCounter",
            object_id=secrets.token_hex(32),
            name=f"object-{i:06d}",
            created_at=now - timedelta(seconds=count - i),
            last_active_at=now - timedelta(seconds=i),
            size_bytes=32_768 + i,
            alarm_at=now + timedelta(hours=1) if i % 10 == 0 else None,
        )
        for i in range(count)
    ]
    ObjectRecord.objects.bulk_create(rows, batch_size=5_000)


def big_object(entries):
    """A real object with `entries` key-value entries and a table; its catalog row."""
    from asgiref.sync import async_to_sync

    from benchmarks.objects import BenchCounter
    from durable_objects.models import ObjectRecord
    from durable_objects.runtime.lifecycle import get_host
    from durable_objects.testing import run_in_durable_object

    stub = BenchCounter.objects.get_by_name("admin-benchmark")

    def fill(instance, ctx):
        for start in range(0, entries, 1_000):
            ctx.storage.put_many(
                {
                    f"entry-{i:06d}": {"n": i, "text": "lorem ipsum " * 30}
                    for i in range(start, min(start + 1_000, entries))
                }
            )
        ctx.storage.sql.exec("CREATE TABLE log(id INTEGER PRIMARY KEY, line TEXT)")
        for i in range(1_000):
            ctx.storage.sql.exec("INSERT INTO log(line) VALUES (?)", f"line {i}")

    async_to_sync(run_in_durable_object)(stub, fill)
    get_host().catalog.flush_sync()
    return ObjectRecord.objects.get(object_id=str(stub.id))


def timed_loads(client, url, loads):
    for _ in range(2):  # warm caches (templates, the statement cache)
        assert client.get(url).status_code == 200
    times = []
    for _ in range(loads):
        start = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return statistics.median(times)


def child(quick):
    work_dir = Path(tempfile.mkdtemp(prefix="do-bench-admin-"))
    sys.path.insert(0, str(REPO))
    configure(work_dir)
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    call_command("migrate", verbosity=0)
    catalog_rows = 10_000 if quick else 100_000
    entries = 1_000 if quick else 10_000
    fill_catalog(catalog_rows)
    record = big_object(entries)
    user = User.objects.create_superuser("bench", password="bench")
    client = Client()
    client.force_login(user)
    changelist = reverse("admin:durable_objects_objectrecord_changelist")
    detail = reverse("admin:durable_objects_objectrecord_change", args=[record.pk])
    figures = [
        (f"(h) admin list, {catalog_rows:,} catalog rows: p50 ms", changelist, True),
        (
            f"(h) admin list, search by name in {catalog_rows:,}: p50 ms",
            changelist + "?q=0999",
            False,
        ),
        ("(h) admin list, filter has-alarm: p50 ms", changelist + "?alarm=yes", False),
        (f"(h) admin object page, {entries:,} entries: p50 ms", detail, True),
        (
            "(h) admin object page, entries page 100: p50 ms",
            f"{detail}?kv_after=entry-004950",
            False,
        ),
    ]
    for label, url, targeted in figures:
        p50 = timed_loads(client, url, LOADS)
        target = f"target <= 300 ms {verdict(p50 <= 300)}" if targeted else ""
        print(row(label, f"{p50:.1f}", target), flush=True)


def run(quick, emit):
    """Run the admin figures in a child process (settings of its own) and emit its rows."""
    output = subprocess.run(
        [sys.executable, "-m", "benchmarks.admin", "--child"] + (["--quick"] if quick else []),
        cwd=REPO,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": ""},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in output.splitlines():
        emit(line)


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.admin")
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options.quick)
    else:
        run(options.quick, lambda text: print(text, flush=True))


if __name__ == "__main__":
    main()
