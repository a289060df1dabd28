"""The ``REPLICATION`` setting, replica URLs, and the Litestream daemon's config and environment.

A shard replicates to ``<REPLICA_URL>/<label>/<id[:2]>/<id>/<generation>``: a new
generation, with a path of its own, each time the object moves to another machine,
because two Litestream processes must never write to one replica path (a paused
holder's daemon may still be running when the next holder's starts).
"""

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured

from durable_objects.conf import DURABILITY_CHOICES, REPLICATION_DEFAULTS, get_config

# The replica URL schemes Litestream 0.5 registers (its replica_url.go); tested here: s3, file.
SCHEMES = ("s3", "file", "gs", "abs", "oss", "sftp", "webdav", "webdavs", "nats")
LOG_LEVELS = ("trace", "debug", "info", "warn", "error")
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")
_HEX_ID = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ReplicationSettings:
    """``DURABLE_OBJECTS["REPLICATION"]``, checked and with its defaults filled in."""

    replica_url: str
    socket: Path
    durability: str
    sync_timeout: float
    litestream_bin: str | None
    config_path: Path
    log_level: str
    retention: float = 24 * 3600

    @property
    def replicated(self):
        """True if a write is acknowledged only once the replica holds it."""
        return self.durability == "replicated"

    def shard_replica_url(self, label, hex_id, generation):
        """The replica URL of one shard in one replica generation."""
        return shard_replica_url(self.replica_url, label, hex_id, generation)


def replication_settings(config=None):
    """The replication settings, or None when ``REPLICATION`` is None (off).

    ImproperlyConfigured names the key that is wrong.
    """
    config = config or get_config()
    user = config.get("REPLICATION")
    if user is None:
        return None
    if not isinstance(user, dict):
        raise ImproperlyConfigured(
            f"DURABLE_OBJECTS['REPLICATION'] must be a dict or None, not {user!r}."
        )
    unknown = sorted(set(user) - set(REPLICATION_DEFAULTS))
    if unknown:
        raise ImproperlyConfigured(
            f"Unknown key(s) in DURABLE_OBJECTS['REPLICATION']: {', '.join(unknown)}. "
            f"Known keys: {', '.join(sorted(REPLICATION_DEFAULTS))}."
        )
    merged = {**REPLICATION_DEFAULTS, **user}
    try:
        check_replica_url(merged["REPLICA_URL"], "REPLICATION['REPLICA_URL']")
    except ValueError as error:
        raise ImproperlyConfigured(str(error)) from None
    if merged["DURABILITY"] not in DURABILITY_CHOICES:
        raise ImproperlyConfigured(
            f"REPLICATION['DURABILITY'] is {merged['DURABILITY']!r}: use \"local\" (durable on "
            'this machine\'s disk) or "replicated" (durable in the replica too).'
        )
    timeout = merged["SYNC_TIMEOUT"]
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ImproperlyConfigured(
            f"REPLICATION['SYNC_TIMEOUT'] is {timeout!r}: give a positive number of seconds."
        )
    retention = merged["RETENTION"]
    if isinstance(retention, bool) or not isinstance(retention, int | float) or retention < 0:
        raise ImproperlyConfigured(
            f"REPLICATION['RETENTION'] is {retention!r}: give a number of seconds >= 0."
        )
    if merged["LOG_LEVEL"] not in LOG_LEVELS:
        raise ImproperlyConfigured(
            f"REPLICATION['LOG_LEVEL'] is {merged['LOG_LEVEL']!r}: use one of "
            f"{', '.join(LOG_LEVELS)}."
        )
    root = Path(config["STORAGE_ROOT"])
    return ReplicationSettings(
        replica_url=merged["REPLICA_URL"],
        socket=Path(merged["SOCKET"] or root / "litestream.sock").absolute(),
        durability=merged["DURABILITY"],
        sync_timeout=float(timeout),
        litestream_bin=merged["LITESTREAM_BIN"],
        config_path=Path(merged["CONFIG_PATH"] or root / "litestream.yml").absolute(),
        log_level=merged["LOG_LEVEL"],
        retention=float(retention),
    )


def check_replica_url(url, key="replica_url"):
    """Raise ValueError unless url is a replica URL Litestream takes (key names it)."""
    example = '"s3://bucket/prefix?endpoint=http://127.0.0.1:8333" or "file:///var/replicas"'
    if not isinstance(url, str) or not url:
        raise ValueError(f"{key} is required when replication is on: {example}.")
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"{key} is {url!r}: its scheme must be one of {', '.join(SCHEMES)} ({example})."
        )
    if parts.fragment:
        raise ValueError(f"{key} is {url!r}: a replica URL has no #fragment.")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(
                f"{key} is {url!r}: a file replica is file:// and an absolute path, "
                "file:///var/replicas."
            )
    elif not parts.netloc:
        raise ValueError(f"{key} is {url!r}: it needs a bucket or host after {parts.scheme}://.")


def shard_replica_url(prefix, label, hex_id, generation):
    """``<prefix>/<label>/<id[:2]>/<id>/<generation>``, the query of prefix kept at the end."""
    if not isinstance(label, str) or not _LABEL.match(label):
        raise ValueError(f"label must look like 'app_label.ClassName', not {label!r}")
    if not isinstance(hex_id, str) or not _HEX_ID.match(hex_id):
        raise ValueError(f"hex_id must be 64 lowercase hex digits, not {hex_id!r}")
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise ValueError(f"generation must be a whole number >= 0, not {generation!r}")
    parts = urlsplit(prefix)
    path = f"{parts.path.rstrip('/')}/{label}/{hex_id[:2]}/{hex_id}/{generation}"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def daemon_environment(environ=None):
    """The environment for a litestream process: this one's, fixed for its S3 client.

    Credentials come from here (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or the
    LITESTREAM_ prefixed pair). Litestream's S3 client refuses to start while AWS_CA_BUNDLE
    is set ("unable to add custom RootCAs"), so it is removed; Go reads a CA bundle from
    SSL_CERT_FILE, which is given that file if it has no value of its own.
    """
    env = dict(os.environ if environ is None else environ)
    bundle = env.pop("AWS_CA_BUNDLE", None)
    if bundle and not env.get("SSL_CERT_FILE"):
        env["SSL_CERT_FILE"] = bundle
    return env


def _duration(seconds):
    """Seconds as a Go duration string (whole seconds, at least one)."""
    return f"{max(1, round(seconds))}s"


def endpoint_of(url):
    """The ``endpoint`` query parameter of an S3 replica URL, or None."""
    values = parse_qs(urlsplit(url).query).get("endpoint")
    return values[0] if values else None


def daemon_config(
    socket_path,
    databases=(),
    *,
    log_level="info",
    retention=None,
    l0_retention=None,
    compaction=None,
):
    """The text of a ``litestream replicate`` config: the control socket, no static dbs
    unless given as (path, replica_url) pairs.

    retention (seconds, REPLICATION["RETENTION"]) is the point-in-time window: every
    state inside it stays restorable, to the transaction. Litestream keeps each sync's
    level-0 file that long (``l0-retention``; after compaction into level 1 only the
    compacted ranges' ends could be restored to), takes a snapshot every
    min(retention, 24 h) and keeps snapshots retention plus one interval (history
    before the oldest snapshot is deleted). None or 0: Litestream's defaults (five
    minutes of level 0, a day of snapshots). l0_retention and compaction (level
    intervals in seconds, from level 1) override them, for tests.

    Strings are written as JSON strings, which YAML reads as they are; run the daemon with
    ``-no-expand-env`` so a ``$`` in a path stays a ``$``.
    """
    lines = [
        "# Generated by django-durable-objects (manage.py litestream); edits are overwritten.",
        "socket:",
        "  enabled: true",
        f"  path: {json.dumps(str(socket_path))}",
        "logging:",
        f"  level: {json.dumps(log_level)}",
    ]
    if retention:
        interval = min(retention, 24 * 3600)
        lines += [
            "snapshot:",
            f"  interval: {_duration(interval)}",
            f"  retention: {_duration(retention + interval)}",
        ]
        if l0_retention is None:
            l0_retention = retention
    if l0_retention is not None:
        lines += [
            f"l0-retention: {_duration(l0_retention)}",
            f"l0-retention-check-interval: {_duration(min(15, l0_retention))}",
        ]
    if compaction:
        lines.append("levels:")
        lines += [f"  - interval: {_duration(seconds)}" for seconds in compaction]
    databases = list(databases)
    if not databases:
        lines.append("dbs: []")
    else:
        lines.append("dbs:")
        for path, replica_url in databases:
            lines.append(f"  - path: {json.dumps(str(Path(path).absolute()))}")
            lines.append("    replica:")
            lines.append(f"      url: {json.dumps(replica_url)}")
    return "\n".join(lines) + "\n"
