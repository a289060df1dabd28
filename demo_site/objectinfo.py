"""What every demo page shows about its object: class, name, ID, awake or asleep, admin link.

Whether an object is awake is read without calling it (a call would wake it): in the
embedded default from this process's host, in a cluster from the object's lease in Redis,
which a host holds while the object is live and gives back when it hibernates.
"""

import functools

from django.http import Http404, JsonResponse
from django.urls import NoReverseMatch, reverse

from durable_objects.conf import get_config, placement_class
from durable_objects.registry import registry
from durable_objects.testing import is_active


def admin_url(hex_id):
    """The admin's catalog page searched for this ID, or the admin's index without it."""
    try:
        return reverse("admin:durable_objects_objectrecord_changelist") + f"?q={hex_id}"
    except NoReverseMatch:  # the catalog has no admin page (not registered)
        pass
    try:
        return reverse("admin:index")
    except NoReverseMatch:  # no admin in the URLconf
        return "/admin/"


def object_panel(cls, name):
    """The template context of the object panel (templates/demo_site/object_panel.html)."""
    stub = cls.objects.get_by_name(name)
    hex_id = str(stub.id)
    label = cls._meta.label
    return {
        "label": label,
        "name": name,
        "id": hex_id,
        "hibernate_after": cls._meta.hibernate_after,
        "admin_url": admin_url(hex_id),
        "state_url": reverse("object-state", args=[label, hex_id]),
        **object_state(stub),
    }


def object_state(stub):
    """{"state": "active", "asleep" or "unknown", "where": which process holds it, or ""}."""
    config = get_config()
    if placement_class(config).distributed:
        import redis

        from durable_objects.placement.leases import lease_key
        from durable_objects.placement.redis import redis_url

        url = redis_url(config)
        try:
            owner = _redis(url).get(lease_key(str(stub.id)))
        except redis.RedisError:
            return {"state": "unknown", "where": "Redis cannot be reached"}
        if owner is None:
            return {"state": "asleep", "where": ""}
        return {"state": "active", "where": f"process {owner.decode()}"}
    if is_active(stub):
        return {"state": "active", "where": "this process"}
    return {"state": "asleep", "where": ""}


@functools.cache
def _redis(url):
    import redis

    return redis.Redis.from_url(url, socket_timeout=2)


def state_view(request, label, hex_id):
    """GET: the object's state as JSON, polled by the page's object panel."""
    try:
        namespace = registry.get(label).objects
        stub = namespace.get(namespace.id_from_string(hex_id))
    except (LookupError, ValueError, TypeError):
        raise Http404("No such durable object.") from None
    return JsonResponse(object_state(stub))
