"""Exceptions raised by durable_objects."""


class DurableObjectError(Exception):
    """Base class of the errors durable_objects raises itself."""

    remote = False
    retryable = False


class RemoteError(DurableObjectError):
    """An exception raised inside an object whose type cannot be rebuilt at the caller."""

    remote = True

    def __init__(self, type_name, message):
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message


class CallTimeout(DurableObjectError):
    """The object did not reply within CALL_TIMEOUT seconds."""

    retryable = True


class ObjectReset(DurableObjectError):
    """The instance was reset (abort(), a failed commit or block_concurrency_while)."""

    retryable = True


class FencedError(DurableObjectError):
    """A commit was refused because a newer activation of the object holds the shard."""

    retryable = True


class StorageLocked(DurableObjectError):
    """Another process hosts objects from the same storage root in embedded mode."""


class ForbiddenQuery(DurableObjectError):
    """A SQL statement was refused: transaction control, ATTACH, internal tables, PRAGMA."""


class DeadlockError(DurableObjectError):
    """A call was refused because it would close a cycle of objects waiting on each other.

    Two call chains crossed (A waits on B while B waits on A): waiting would last until
    CALL_TIMEOUT, so one of the calls fails at once instead. The message names the objects.
    """

    retryable = True


class ObjectUnavailable(DurableObjectError):
    """The object's host cannot be reached now (it died, or no host is live); retry."""

    retryable = True


# Errors that say the object could not be reached or did not answer (its host died or is
# unknown, its lease ended, it was reset), not that a handler failed: a later retry may
# work. The admin shows them as "unreachable"; a socket is closed with 1012 for them.
UNREACHABLE = (CallTimeout, ObjectUnavailable, ObjectReset, FencedError)
