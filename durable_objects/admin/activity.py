"""Where objects are live: this process, another process of the cluster, or nowhere.

Answered without waking anything: from this host's activations, and in a cluster from
the placement's leases in Redis (a lease is held while an object is live and given back
when it hibernates). One Redis round trip per page, never a shard opened per row.
"""

from redis.exceptions import RedisError

from durable_objects.runtime.calls import on_host_loop_sync
from durable_objects.runtime.lifecycle import current_host, get_host

HERE = "here"
ELSEWHERE = "elsewhere"
HIBERNATED = "hibernated"
UNKNOWN = "unknown"  # the cluster's Redis did not answer

LABELS = {
    HERE: "active in this process",
    ELSEWHERE: "active in another process",
    HIBERNATED: "hibernated",
    UNKNOWN: "unknown (Redis did not answer)",
}
MAX_SCANNED = 30_000  # leases read for the active/hibernated filter


def _local_keys():
    host = current_host()
    if host is None or not host.usable:
        return set()
    return {key for key, a in list(host.activations.items()) if a.instance is not None}


def _distributed_host():
    """The host, if objects may live in other processes too; else None."""
    from durable_objects.conf import placement_class

    if not placement_class().distributed:
        return None
    return get_host()


def status_of(records):
    """{record.pk: (status, holder token or None)} for a page of catalog rows."""
    local = _local_keys()
    result = {r.pk: (HERE, None) for r in records if (r.label, r.object_id) in local}
    rest = [r for r in records if r.pk not in result]
    host = _distributed_host() if rest else None
    if host is None:
        result.update({r.pk: (HIBERNATED, None) for r in rest})
        return result
    placement = host.placement
    hex_ids = [r.object_id for r in rest]
    try:
        holders = on_host_loop_sync(host, placement.holders, hex_ids, timeout=2.0)
    except (RedisError, OSError, TimeoutError):
        result.update({r.pk: (UNKNOWN, None) for r in rest})
        return result
    for record in rest:
        token = holders.get(record.object_id)
        if token is None:
            result[record.pk] = (HIBERNATED, None)
        else:
            result[record.pk] = (HERE if token == placement.token else ELSEWHERE, token)
    return result


def active_ids():
    """Hex IDs of the objects live anywhere (this process, or held in the cluster)."""
    ids = {hex_id for _, hex_id in _local_keys()}
    host = _distributed_host()
    if host is not None:
        ids |= on_host_loop_sync(host, host.placement.held_ids, MAX_SCANNED, timeout=5.0)
    return ids
