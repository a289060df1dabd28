"""Alarms: one per object, stored in its shard, delivered by RQ or a local timer."""
