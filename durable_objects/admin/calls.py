"""Running the admin's operations inside an object, with errors a page can show."""

import asyncio

from asgiref.sync import async_to_sync

from durable_objects.conf import get_config
from durable_objects.exceptions import UNREACHABLE, CallTimeout, ObjectUnavailable, RemoteError
from durable_objects.registry import registry
from durable_objects.runtime.calls import call

from .operations import AdminOperation

READ_TIMEOUT = 10.0  # seconds a page waits for a read (at most CALL_TIMEOUT)


class ObjectUnreachable(Exception):
    """The object is busy, reset, or its host is down; the message says which."""


class OperationFailed(Exception):
    """The operation ran and refused (bad input, a refused query); the message says why."""


def class_of(record):
    """The DurableObject class of a catalog row, or None if it is not installed."""
    try:
        return registry.get(record.label)
    except LookupError:
        return None


def object_id_of(record):
    cls = class_of(record)
    if cls is None:
        raise OperationFailed(
            f"The class {record.label} is not installed in this process, so its objects "
            "cannot be opened here."
        )
    object_id = cls.objects.id_from_string(record.object_id)
    object_id.name = record.name
    return cls, object_id


def run(record, op, *, write=False, **args):
    """Run the operation op inside the object of record; return its result.

    A read waits at most READ_TIMEOUT seconds; a write waits CALL_TIMEOUT, as any call.
    """
    cls, object_id = object_id_of(record)
    event = AdminOperation(op, args, name=object_id.name)
    timeout = get_config()["CALL_TIMEOUT"]
    if not write:
        timeout = min(timeout, READ_TIMEOUT)
    try:
        return async_to_sync(_call)(cls, object_id, event, timeout)
    except TimeoutError as exc:
        if getattr(exc, "remote", False):  # the console's query ran too long
            raise OperationFailed(str(exc)) from None
        raise ObjectUnreachable(
            f"The object is busy: it did not answer within {timeout:g} s. Try again."
        ) from None
    except UNREACHABLE as exc:
        raise ObjectUnreachable(describe_unreachable(exc, write)) from None
    except (ValueError, TypeError, LookupError, RemoteError) as exc:
        raise OperationFailed(str(exc)) from None
    except Exception as exc:
        if getattr(exc, "remote", False):  # raised inside the object: show it, not a 500
            raise OperationFailed(f"{type(exc).__name__}: {exc}") from None
        raise


async def _call(cls, object_id, event, timeout):
    return await asyncio.wait_for(call(cls, object_id, event), timeout)


def run_unreachable_safe(fn, *args, write=True):
    """Call fn(*args) (an awaitable-returning helper such as an alarm run) like run()."""
    try:
        return async_to_sync(fn)(*args)
    except UNREACHABLE as exc:
        raise ObjectUnreachable(describe_unreachable(exc, write)) from None
    except Exception as exc:
        if getattr(exc, "remote", False) or isinstance(exc, ValueError | TypeError):
            raise OperationFailed(f"{type(exc).__name__}: {exc}") from None
        raise


def describe_unreachable(exc, write):
    maybe = " It may still run; check the object before retrying." if write else ""
    if isinstance(exc, CallTimeout):
        return f"The object is busy: it did not answer within CALL_TIMEOUT.{maybe}"
    if isinstance(exc, ObjectUnavailable):
        return f"The object's host cannot be reached: {exc}"
    return f"The object was reset while this page waited ({exc}). Try again."
