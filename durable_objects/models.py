"""The catalog: one row per object that has storage, for listing and for the admin."""

from django.db import models


class ObjectRecord(models.Model):
    """An object with storage: written by hosts off the hot path, read by all() and admin."""

    label = models.CharField(max_length=200)
    object_id = models.CharField("ID", max_length=64)
    # NULL, not "", for objects made by new_unique_id(): "" is never a valid name.
    name = models.TextField(null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField()
    last_active_at = models.DateTimeField(db_index=True)
    size_bytes = models.BigIntegerField(default=0)
    alarm_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Accepted sockets as of the object's last activity (they stay through hibernation).
    socket_count = models.PositiveIntegerField("sockets", default=0)

    class Meta:
        verbose_name = "durable object"
        constraints = [
            models.UniqueConstraint(fields=["label", "object_id"], name="do_record_label_id"),
        ]
        indexes = [models.Index(fields=["label", "name"], name="do_record_label_name")]
        ordering = ["label", "object_id"]
        # The console runs any read-only SQL in a shard: more than viewing the pages.
        permissions = [("use_sql_console", "Can run read-only SQL in an object's console")]

    def __str__(self):
        return f"{self.label} {self.name or self.object_id}"
