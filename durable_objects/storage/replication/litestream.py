"""A client of the Litestream daemon's control socket: HTTP over a Unix socket, JSON.

The endpoints and payloads are those of Litestream 0.5's ``server.go`` (the CLI's
``register``, ``unregister``, ``sync -wait``, ``info``, ``list`` are thin clients of them):

- ``POST /register`` ``{"path", "replica_url"}``: ``{"status": "registered" |
  "already_registered", "path"}``. An already registered path keeps its first replica URL.
- ``POST /unregister`` ``{"path", "timeout"}``: ``{"status", "path", "txid"}``.
- ``POST /sync`` ``{"path", "wait", "timeout"}``: ``{"status": "synced" | "synced_local" |
  "no_change", "path", "txid", "replicated_txid"}``; 404 for a path it does not know.
- ``GET /txid?path=``, ``GET /info``, ``GET /list``, ``GET /debug/sync-status?path=``.

Errors are ``{"error": message}`` with a 4xx or 5xx status. The daemon's timeouts are
whole seconds.

The client is synchronous: a sync that waits for the replica blocks for a round trip to
object storage, so call it from a thread (the host's commit threads), not the event loop.
Each thread keeps its own keep-alive connection.
"""

import http.client
import json
import math
import os
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote

from .config import check_replica_url
from .errors import DaemonError, DaemonUnreachable, DatabaseNotRegistered, ReplicaUnavailable

# Seconds the client waits past the daemon's own deadline, so the daemon's error arrives.
_MARGIN = 5.0

# Causes the daemon reports from the S3 client, and what to do about each.
_HINTS = (
    ("NoSuchBucket", "the bucket does not exist: create it, or correct the replica URL"),
    (
        "SignatureDoesNotMatch",
        "the S3 secret key was refused: check AWS_SECRET_ACCESS_KEY in the daemon's environment",
    ),
    (
        "InvalidAccessKeyId",
        "the S3 access key is unknown: check AWS_ACCESS_KEY_ID in the daemon's environment",
    ),
    (
        "AccessDenied",
        "the S3 credentials may not use this bucket: check the daemon's AWS_ACCESS_KEY_ID",
    ),
    (
        "unable to add custom RootCAs",
        "unset AWS_CA_BUNDLE in the daemon's environment (use SSL_CERT_FILE for a CA bundle)",
    ),
    (
        "get credentials",
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the "
        "environment of the litestream process",
    ),
    ("connection refused", "the replica store is not reachable: is it running?"),
    ("no such host", "the replica store's host name does not resolve"),
    ("context deadline exceeded", "the replica did not answer in time"),
)


def hint_for(message):
    """What to do about a daemon error message, or None."""
    for needle, hint in _HINTS:
        if needle.lower() in message.lower():
            return hint
    return None


@dataclass(frozen=True)
class SyncResult:
    """What a sync reports: the local transaction id, and the replica's."""

    status: str  # "synced", "synced_local" or "no_change"
    path: str
    txid: int
    replica_txid: int

    @property
    def replicated(self):
        """True if the replica holds every transaction the database had at the sync."""
        return self.replica_txid >= self.txid


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class LitestreamClient:
    """The control socket of one ``litestream replicate`` daemon.

    timeout is the seconds any request may take, a sync's wait excepted (it has its own).
    """

    def __init__(self, socket_path, *, timeout=5.0):
        self.socket_path = os.fspath(socket_path)
        self.timeout = timeout
        self._local = threading.local()

    def __repr__(self):
        return f"<LitestreamClient {self.socket_path}>"

    # -- the endpoints -------------------------------------------------------------------

    def info(self):
        """The daemon's version, pid, uptime and database count."""
        return self._call("GET", "/info")

    def list(self):
        """Every database the daemon manages: dicts with path, status, last_sync_at."""
        return self._call("GET", "/list")["databases"]

    def register(self, path, replica_url):
        """Replicate the SQLite database at path to replica_url; return the status.

        ``"already_registered"`` means the daemon replicates path already, to the URL it
        was first given: unregister first to change it.
        """
        check_replica_url(replica_url)
        body = {"path": _database_path(path), "replica_url": replica_url}
        return self._call("POST", "/register", body)["status"]

    def unregister(self, path, *, timeout=None):
        """Stop replicating path (after a last sync); return its last transaction id."""
        seconds = _whole_seconds(timeout or self.timeout)
        body = {"path": _database_path(path), "timeout": seconds}
        return self._call("POST", "/unregister", body, timeout=seconds + _MARGIN)["txid"]

    def sync(self, path, *, wait=True, timeout=None):
        """Replicate path's new transactions now; with wait, until the replica has them.

        Returns a SyncResult. ReplicaUnavailable if the replica did not take them within
        timeout seconds (default: the client's), DatabaseNotRegistered if the daemon does
        not know path.
        """
        seconds = _whole_seconds(timeout or self.timeout)
        body = {"path": _database_path(path), "wait": bool(wait), "timeout": seconds}
        data = self._call("POST", "/sync", body, timeout=seconds + _MARGIN)
        return SyncResult(
            status=data["status"],
            path=data["path"],
            txid=int(data["txid"]),
            replica_txid=int(data["replicated_txid"]),
        )

    def txid(self, path):
        """The newest transaction id the daemon has seen in path's WAL."""
        query = quote(_database_path(path), safe="/")
        return int(self._call("GET", f"/txid?path={query}")["txid"])

    def sync_status(self, path=None):
        """The daemon's sync diagnostics (one dict per database, or path's only)."""
        target = "/debug/sync-status"
        if path is not None:
            target += "?path=" + quote(_database_path(path), safe="/")
        return self._call("GET", target)["databases"]

    def wait_ready(self, timeout=10.0, process=None):
        """Wait until the daemon answers ``/info``; return its info.

        DaemonUnreachable after timeout seconds, or at once if process (a Popen) exited.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._call("GET", "/info", timeout=min(1.0, self.timeout))
            except DaemonUnreachable:
                exited = process is not None and process.poll() is not None
                if exited or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def close(self):
        """Close this thread's connection (others close when their thread ends)."""
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    # -- HTTP over the socket ------------------------------------------------------------

    def _call(self, method, target, body=None, *, timeout=None):
        status, data = self._request(method, target, body, timeout or self.timeout)
        if status == 200:
            return data
        message = data.get("error") or f"HTTP {status}"
        if data.get("details"):
            message += f" ({data['details']})"
        path = body.get("path") if body else None
        kind = DaemonError
        if status == 404 and path is not None:
            kind = DatabaseNotRegistered
            message = f"Litestream does not replicate {path}: register it first ({message})"
        elif status == 500 and target == "/sync":
            kind = ReplicaUnavailable
            hint = hint_for(message)
            message = f"The replica of {path} did not take its changes: {message}"
            if hint:
                message += f". Hint: {hint}."
        else:
            message = f"Litestream refused {method} {target.split('?')[0]}: {message}"
        raise kind(message, status=status, path=path)

    def _request(self, method, target, body, timeout):
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        for attempt in (1, 2):
            connection, reused = self._connection()
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
            try:
                connection.request(method, target, body=payload, headers=headers)
                response = connection.getresponse()
                raw = response.read()
                status = response.status
                break
            except TimeoutError:
                self.close()
                raise DaemonUnreachable(
                    f"The Litestream daemon at {self.socket_path} did not answer "
                    f"{method} {target.split('?')[0]} within {timeout:g} s.",
                    socket_path=self.socket_path,
                ) from None
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if reused and attempt == 1:
                    continue  # the daemon closed an idle keep-alive connection
                raise self._unreachable("closed the connection") from None
            except FileNotFoundError:
                self.close()
                raise self._unreachable(
                    "does not exist: start the daemon (manage.py litestream)"
                ) from None
            except ConnectionRefusedError:
                self.close()
                raise self._unreachable(
                    "refuses connections: no daemon listens on it (a stale socket file?)"
                ) from None
            except (OSError, http.client.HTTPException) as error:
                self.close()
                raise self._unreachable(f"could not be used: {error}") from None
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise DaemonError(
                f"Litestream answered {method} {target} with something that is not JSON: "
                f"{raw[:200]!r}",
                status=status,
            ) from None
        return status, data if isinstance(data, dict) else {"result": data}

    def _connection(self):
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            return connection, True
        connection = _UnixConnection(self.socket_path, self.timeout)
        self._local.connection = connection
        return connection, False

    def _unreachable(self, what):
        return DaemonUnreachable(
            f"The Litestream control socket {self.socket_path} {what}.",
            socket_path=self.socket_path,
        )


def _database_path(path):
    # The daemon matches databases by their path string: always give it the absolute one.
    return os.path.abspath(os.fspath(path))


def _whole_seconds(seconds):
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {seconds!r}")
    return max(1, math.ceil(seconds))
