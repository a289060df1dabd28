"""Alarm events (delivery and retry bookkeeping); registered for the wire."""
