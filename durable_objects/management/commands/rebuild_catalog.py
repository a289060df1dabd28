"""``manage.py rebuild_catalog``: write a catalog row for every shard under the root."""

import sqlite3
from datetime import UTC, datetime

from django.core.management.base import BaseCommand

from durable_objects.conf import get_config
from durable_objects.models import ObjectRecord
from durable_objects.storage.files import file_size, open_read_only, shard_files


class Command(BaseCommand):
    help = (
        "Walk the storage root and record every shard in the catalog. The catalog is "
        "written off the hot path, so a process killed between flushes can leave objects "
        "out of it; this puts them back."
    )

    def handle(self, *args, **options):
        root = get_config()["STORAGE_ROOT"]
        rows = []
        for _label, _hex_id, path in sorted(shard_files(root)):
            meta = self._read_meta(path)
            if meta is None:
                self.stderr.write(f"Skipped {path}: not a shard.")
                continue
            mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            rows.append(
                ObjectRecord(
                    label=meta["label"],
                    object_id=meta["id"],
                    name=meta.get("name"),
                    created_at=datetime.fromtimestamp(meta["created_at"], UTC),
                    last_active_at=mtime,
                    size_bytes=file_size(path),
                )
            )
        ObjectRecord.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["label", "object_id"],
            update_fields=["name", "size_bytes"],
            batch_size=500,
        )
        self.stdout.write(f"Recorded {len(rows)} objects from {root}.")

    @staticmethod
    def _read_meta(path):
        """Read a shard's _do_meta through a read-only connection; None if it has none."""
        try:
            conn = open_read_only(path)
        except sqlite3.Error:
            return None
        try:
            meta = dict(conn.execute("SELECT key, value FROM _do_meta"))
        except sqlite3.Error:
            return None
        finally:
            conn.close()
        if not {"label", "id", "created_at"} <= meta.keys():
            return None
        return meta
