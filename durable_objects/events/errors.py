"""Exceptions that cross from an object to its caller, by value."""

import sys
import traceback

from durable_objects import serialization
from durable_objects.exceptions import UNREACHABLE, RemoteError


def _type_path(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


# The type paths of exceptions.UNREACHABLE, as encoded errors name them.
UNREACHABLE_TYPES = frozenset(_type_path(cls) for cls in UNREACHABLE)


def encode_exception(exc):
    """Describe exc as plain data: its type's path, message, args, retryable, traceback."""
    args = list(exc.args)
    try:
        serialization.dumps(args)
    except TypeError:
        args = None
    return {
        "type": _type_path(type(exc)),
        "message": str(exc),
        "args": args,
        "retryable": bool(getattr(exc, "retryable", False)),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def is_unreachable(error):
    """True if the encoded error is one of exceptions.UNREACHABLE (not a handler's own)."""
    return error.get("type") in UNREACHABLE_TYPES


def _resolve(type_path):
    """Find an already imported Exception subclass by path; never import anything."""
    module_name, _, qualname = type_path.rpartition(".")
    while module_name and module_name not in sys.modules:
        module_name, _, head = module_name.rpartition(".")
        qualname = f"{head}.{qualname}"
    target = sys.modules.get(module_name)
    for part in qualname.split("."):
        target = getattr(target, part, None)
    if isinstance(target, type) and issubclass(target, Exception):
        return target
    return None


def decode_exception(data):
    """Rebuild the exception at the caller, with ``.remote = True`` and its ``retryable``."""
    cls = _resolve(data["type"])
    exc = None
    if cls is not None:
        try:
            exc = cls(*data["args"]) if data["args"] is not None else cls(data["message"])
        except Exception:
            exc = None
    if exc is None:
        exc = RemoteError(data["type"].rpartition(".")[2], data["message"])
    exc.remote = True
    exc.retryable = data.get("retryable", False)  # also where the type is not rebuilt
    exc.remote_type = data["type"]
    exc.remote_traceback = data["traceback"]
    return exc
