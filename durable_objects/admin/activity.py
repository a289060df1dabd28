"""Where objects are live: this process, another process of the cluster, or nowhere.

Answered without waking anything: from this host's activations, and in a cluster from
the placement's leases in Redis (a lease is held while an object is live and given back
when it hibernates). One Redis round trip per page, never a shard opened per row.
"""

import asyncio

from redis.exceptions import RedisError

from durable_objects.placement.redis import lease_key
from durable_objects.runtime.host import current_host, get_host

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


def _cluster():
    from durable_objects.conf import get_config

    if get_config()["PLACEMENT"] != "redis":
        return None
    return get_host().cluster


def _on_host_loop(cluster, coroutine, timeout=2.0):
    future = asyncio.run_coroutine_threadsafe(coroutine, cluster.host.loop)
    return future.result(timeout)


def status_of(records):
    """{record.pk: (status, holder token or None)} for a page of catalog rows."""
    local = _local_keys()
    result = {r.pk: (HERE, None) for r in records if (r.label, r.object_id) in local}
    rest = [r for r in records if r.pk not in result]
    cluster = _cluster() if rest else None
    if cluster is None:
        result.update({r.pk: (HIBERNATED, None) for r in rest})
        return result
    redis = cluster.placement.redis
    try:
        holders = _on_host_loop(cluster, redis.mget([lease_key(r.object_id) for r in rest]))
    except (RedisError, OSError, TimeoutError):
        result.update({r.pk: (UNKNOWN, None) for r in rest})
        return result
    own = cluster.placement.token
    for record, holder in zip(rest, holders, strict=True):
        if holder is None:
            result[record.pk] = (HIBERNATED, None)
        else:
            token = holder.decode()
            result[record.pk] = (HERE if token == own else ELSEWHERE, token)
    return result


def active_ids():
    """Hex IDs of the objects live anywhere (this process, or leased in the cluster)."""
    ids = {hex_id for _, hex_id in _local_keys()}
    cluster = _cluster()
    if cluster is not None:
        ids |= _on_host_loop(cluster, _scan_leases(cluster.placement.redis), timeout=5.0)
    return ids


async def _scan_leases(redis):
    prefix = lease_key("")
    found = set()
    async for key in redis.scan_iter(match=prefix + "*", count=1000):
        found.add(key.decode()[len(prefix) :])
        if len(found) >= MAX_SCANNED:
            break
    return found
