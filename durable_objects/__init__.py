"""Durable Objects for Django: one live instance per ID, each with its own SQLite database."""

from .base import DurableObject
from .exceptions import (
    CallTimeout,
    DeadlockError,
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
    "DeadlockError",
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
