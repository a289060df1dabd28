from django.db import models


class CounterRow(models.Model):
    """The baseline: a counter as a Django developer writes one today."""

    name = models.CharField(max_length=50, unique=True)
    value = models.BigIntegerField(default=0)

    class Meta:
        managed = False  # created by the benchmark with schema_editor, no migration

    def __str__(self):
        return f"{self.name}={self.value}"


class ChatMessage(models.Model):
    """The WebSocket baseline's messages, saved with the ORM by a plain Channels consumer."""

    room = models.CharField(max_length=50)
    text = models.TextField()

    class Meta:
        managed = False  # created by the benchmark with schema_editor, no migration

    def __str__(self):
        return self.text[:20]
