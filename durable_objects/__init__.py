"""Durable Objects for Django: one live instance per ID, each with its own SQLite database."""

from .base import DurableObject
from .exceptions import (
    CallTimeout,
    DurableObjectError,
    FencedError,
    ForbiddenQuery,
    ObjectReset,
    ObjectUnavailable,
    RemoteError,
    StorageLocked,
)
from .ids import DurableObjectId

__all__ = [
    "CallTimeout",
    "DurableObject",
    "DurableObjectError",
    "DurableObjectId",
    "FencedError",
    "ForbiddenQuery",
    "ObjectReset",
    "ObjectUnavailable",
    "RemoteError",
    "StorageLocked",
]
