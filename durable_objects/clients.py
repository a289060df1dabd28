"""Per-client limits: sockets held open and new objects woken, by client address.

Counted in this process's memory (each daphne process counts its own clients), off
unless set: ``WEBSOCKET_MAX_PER_CLIENT`` and ``NEW_OBJECTS_PER_CLIENT_PER_MINUTE``
(docs/ref/settings.md). A client is its address as the server saw it (``scope["client"]``,
``REMOTE_ADDR``); behind a proxy, have the server take it from the proxy's headers
(``daphne --proxy-headers``). A connection without an address is not limited.
"""

import threading
import time

from durable_objects.conf import get_config
from durable_objects.storage.files import shard_path

WINDOW = 60.0  # seconds over which NEW_OBJECTS_PER_CLIENT_PER_MINUTE counts

_lock = threading.Lock()  # sync views count new objects from their own threads
_sockets = {}  # client -> sockets open (or connecting) in this process
_new_objects = {}  # client -> {hex_id: when first counted}, oldest first
_last_sweep = 0.0


def client_address(source):
    """The client's address from an ASGI scope or a Django HttpRequest, or None."""
    if isinstance(source, dict):
        client = source.get("client")
        return str(client[0]) if client else None
    return source.META.get("REMOTE_ADDR") or None


def take_socket(client):
    """Count one more socket of client; False (nothing counted) if it holds its limit."""
    if client is None:
        return True
    limit = get_config()["WEBSOCKET_MAX_PER_CLIENT"]
    with _lock:
        held = _sockets.get(client, 0)
        if limit is not None and held >= limit:
            return False
        _sockets[client] = held + 1
    return True


def release_socket(client):
    """Count one socket of client less (one that take_socket() counted)."""
    if client is None:
        return
    with _lock:
        held = _sockets.get(client, 0) - 1
        if held > 0:
            _sockets[client] = held
        else:
            _sockets.pop(client, None)


def sockets_of(client):
    """How many sockets of client this process holds."""
    return _sockets.get(client, 0)


def has_storage(cls, object_id):
    """True if the object has a shard file under this process's STORAGE_ROOT."""
    return shard_path(get_config()["STORAGE_ROOT"], cls._meta.label, str(object_id)).exists()


def allow_new_object(cls, object_id, client, *, now=None):
    """True if client may wake the object of cls and object_id now.

    An object that has storage is always allowed. One without counts against the
    client's NEW_OBJECTS_PER_CLIENT_PER_MINUTE, once per minute however often the client
    comes back to it; past the limit the answer is False, and a caller refuses (a socket
    with 4429, a view with HTTP 429) before anything wakes the object.
    """
    limit = get_config()["NEW_OBJECTS_PER_CLIENT_PER_MINUTE"]
    if limit is None or client is None or has_storage(cls, object_id):
        return True
    now = time.monotonic() if now is None else now
    key = f"{cls._meta.label}:{object_id}"
    with _lock:
        _sweep(now)
        counted = _new_objects.setdefault(client, {})
        _expire(counted, now)
        if key in counted:
            return True
        if len(counted) >= limit:
            return False
        counted[key] = now
    return True


def _expire(counted, now):
    while counted:
        key, when = next(iter(counted.items()))
        if when > now - WINDOW:
            break
        del counted[key]


def _sweep(now):
    """Forget the clients whose counts have all expired (at most once a minute)."""
    global _last_sweep
    if now - _last_sweep < WINDOW:
        return
    _last_sweep = now
    for client in list(_new_objects):
        _expire(_new_objects[client], now)
        if not _new_objects[client]:
            del _new_objects[client]


def reset():
    """Forget every count (for tests)."""
    with _lock:
        _sockets.clear()
        _new_objects.clear()
