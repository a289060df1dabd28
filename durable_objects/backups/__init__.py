"""Export, import, copy and point-in-time restore of one object's database
(docs/topics/backups.md)."""

from durable_objects.storage.replication.bookmarks import InvalidBookmark

from .transfer import (
    ExportResult,
    ImportResult,
    RestoreSummary,
    acopy_object,
    aexport_object,
    aexport_to,
    aimport_object,
    arestore_object,
    copy_object,
    export_object,
    import_object,
    restore_object,
)

__all__ = [
    "ExportResult",
    "ImportResult",
    "InvalidBookmark",
    "RestoreSummary",
    "acopy_object",
    "aexport_object",
    "aexport_to",
    "aimport_object",
    "arestore_object",
    "copy_object",
    "export_object",
    "import_object",
    "restore_object",
]
