"""The embedded default: every object lives in this one process.

The storage root is locked for the process (``flock``), so a second process pointed at
the same root is refused instead of activating the same objects again.
"""

import fcntl
import os
import threading

from durable_objects.exceptions import StorageLocked

from .base import BasePlacement

_held = {}
_guard = threading.Lock()


def lock_storage_root(root):
    """Take the root's lock for this process, or raise StorageLocked naming the holder.

    The lock is flock(2): the kernel releases it when the holder exits, even by SIGKILL.
    """
    key = str(root)
    with _guard:
        if key in _held:
            return
        root.mkdir(parents=True, exist_ok=True)
        path = root / ".host.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StorageLocked(
                f"The storage root {root} is in use by process {holder}. In embedded mode "
                "only one process may host objects from a storage root: stop that process, "
                "or point DURABLE_OBJECTS['STORAGE_ROOT'] elsewhere."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        _held[key] = fd


def unlock_storage_root(root):
    """Release this process's lock on root (tests and clean shutdown)."""
    with _guard:
        fd = _held.pop(str(root), None)
    if fd is not None:
        os.close(fd)


class LocalPlacement(BasePlacement):
    """One process holds every object; events never leave it."""

    def __init__(self, host, config, *, can_host=True):
        super().__init__(host, config, can_host=True)
        # The lock stays with the process after the host closes: a reset host (tests,
        # settings changed) takes it again at once, and the kernel drops it at exit.
        lock_storage_root(config["STORAGE_ROOT"])

    def holds(self, hex_id):
        return True

    def route(self, cls, object_id, event, hops=0):
        return self.host.dispatch(cls, object_id, event)
