"""What this process knows about the sockets it holds.

Each socket row in a shard names its holder, the process whose consumer has the
connection. A row whose holder is gone (the process died or restarted) or whose consumer
no longer exists is stale, and an object drops such rows the first time it looks at its
sockets in an activation. In the embedded default every socket is held by the one host
process, so both questions are answered here, from memory; in a cluster the placement
backend says which other processes are alive.
"""

import os
import secrets
import time

from . import collector

HOLDER = f"{os.getpid():x}-{secrets.token_hex(4)}"

# Socket id -> consumer, for every socket connected through this process.
_consumers = {}
# Object id (hex) -> {socket id: consumer} of its sockets connected through this process.
_by_object = {}
# Socket id -> UNIX time of the last auto-response the consumer answered.
_auto_response_times = {}


def register(socket_id, consumer, object_id):
    _consumers[socket_id] = consumer
    _by_object.setdefault(object_id, {})[socket_id] = consumer
    collector.socket_opened()


def unregister(socket_id, object_id):
    if _consumers.pop(socket_id, None) is not None:
        collector.socket_closed()
    _auto_response_times.pop(socket_id, None)
    sockets = _by_object.get(object_id)
    if sockets is not None:
        sockets.pop(socket_id, None)
        if not sockets:
            del _by_object[object_id]


def consumers_of(object_id):
    """(socket id, consumer) for each socket of the object connected through this process."""
    return list(_by_object.get(object_id, {}).items())


def local_consumers(object_id):
    """The consumers of the object's sockets connected through this process.

    One list, no tuple per socket: a broadcast to 10,000 sockets that made a tuple for
    each would promote them all to the old generation, and make full collections (whose
    pauses grow with the sockets) come every few broadcasts.
    """
    sockets = _by_object.get(object_id)
    return list(sockets.values()) if sockets else []


def is_connected(holder, socket_id, placement):
    """True if the socket's holder is alive and (if it is this process) has its consumer.

    For a socket held by another process, only the placement knows (in a cluster, from
    that process's heartbeat): its sockets count as connected while it is alive.
    """
    if holder == HOLDER:
        return socket_id in _consumers
    return placement.holder_alive(holder)


def consumer(socket_id):
    return _consumers.get(socket_id)


def consumer_on(channel):
    """The consumer reading channel, if it is one of this process's sockets."""
    for consumer in _consumers.values():
        if consumer.channel_name == channel:
            return consumer
    return None


def record_auto_response(socket_id):
    _auto_response_times[socket_id] = time.time()


def auto_response_time(socket_id):
    return _auto_response_times.get(socket_id)


def note_auto_response(socket_id, when):
    """Record a time another process's consumer reported with the socket's message."""
    if when is not None and when > _auto_response_times.get(socket_id, 0):
        _auto_response_times[socket_id] = when
