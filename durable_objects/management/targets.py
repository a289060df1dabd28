"""The object a command names: ``<label> <name-or-id>``, as the backup commands take it."""

import re

from django.core.management.base import CommandError

from durable_objects.conf import get_config
from durable_objects.models import ObjectRecord
from durable_objects.registry import registry
from durable_objects.storage.files import shard_path

_HEX_ID = re.compile(r"[0-9a-f]{64}\Z")
EMBEDDED_SERVER_HINT = (
    "The server process holds the objects in the embedded mode: run the command while it "
    "is stopped, or use the Download database and upload buttons of the object's admin page."
)


def add_object_arguments(parser):
    parser.add_argument("label", help='The class\'s label, "<app_label>.<ClassName>".')
    parser.add_argument(
        "object", metavar="name-or-id", help="The object's name, or its ID (64 hex digits)."
    )
    parser.add_argument(
        "--name",
        action="store_true",
        dest="as_name",
        help="Take name-or-id as a name even where it looks like an ID.",
    )


def object_of(label, name_or_id, *, as_name=False):
    """(cls, object_id) for a command's arguments; CommandError if they name nothing."""
    try:
        cls = registry.get(label)
    except LookupError:
        known = ", ".join(sorted(c._meta.label for c in registry.all())) or "none"
        raise CommandError(
            f"No DurableObject class is labelled {label!r} (installed: {known})."
        ) from None
    if _HEX_ID.match(name_or_id) and not as_name:
        return cls, cls.objects.id_from_string(name_or_id)
    return cls, cls.objects.id_from_name(name_or_id)


def has_storage(cls, object_id):
    """True if the catalog lists the object, or its shard is under this STORAGE_ROOT."""
    label = cls._meta.label
    if ObjectRecord.objects.filter(label=label, object_id=str(object_id)).exists():
        return True
    return shard_path(get_config()["STORAGE_ROOT"], label, str(object_id)).exists()
