"""The base class of alarm backends: what a host calls, and what a backend can do.

``ALARM_BACKEND`` names a subclass by dotted path. Each host process makes one instance,
``Backend(host)``, and calls it from the host's loop: ``start()`` once in a server
process, ``schedule()`` after every commit that changed an object's alarm, ``data_lost()``
when the cluster's Redis lost its data, ``close()`` when the host stops. The object
itself decides whether an alarm is due (``events.AlarmDelivery``), so a backend only has
to deliver at least once, at or after the time; early, stale and duplicate deliveries do
nothing.

The capability flags are read on the class (by the system checks and by
``manage.py sweep_alarms``), so a subclass of a backend works wherever the backend does.
"""

from durable_objects.conf import get_config, placement_class


class BaseAlarmBackend:
    """Deliver each object's alarm at or after its time, at least once."""

    requires_cluster = False
    """Deliveries start in a process apart from the hosts (an RQ worker), so their calls
    must be routed to the object's holder: the backend needs ``PLACEMENT = "redis"``."""

    supports_sweep = False
    """``sweep(alarms)`` re-creates lost deliveries from any process, without a host
    (``manage.py sweep_alarms``); otherwise the hosts re-arm pending alarms themselves."""

    def __init__(self, host):
        self.host = host
        self.closed = False  # set by close(); a closed backend schedules and delivers nothing

    def start(self):
        """Begin work on the host's loop; called once, in a server process only."""
        raise NotImplementedError("subclasses of BaseAlarmBackend must provide a start() method")

    def schedule(self, label, hex_id, due):
        """Deliver the object's alarm at due (UNIX seconds), or never (None); after a commit.

        Called on the host's loop, so it must not block; a later call replaces an earlier
        one for the same object.
        """
        raise NotImplementedError(
            "subclasses of BaseAlarmBackend must provide a schedule() method"
        )

    def data_lost(self):
        """Make up for the cluster's Redis losing its data; a no-op unless jobs live there."""

    def close(self):
        """Stop delivering; called once, when the host stops (on its loop or after it)."""
        raise NotImplementedError("subclasses of BaseAlarmBackend must provide a close() method")

    @classmethod
    def sweep(cls, alarms):
        """Re-create the delivery of each pending alarm that has none; return how many.

        alarms maps (label, hex) to due UNIX seconds (``sweep.pending_alarms()``). Only for
        backends with ``supports_sweep``.
        """
        raise NotImplementedError(f"{cls.__qualname__} does not support sweeps.")

    @classmethod
    def check(cls, **kwargs):
        """Yield the system-check messages of this backend with the current settings."""
        from django.core.checks import Error

        config = get_config()
        path = f"{cls.__module__}.{cls.__qualname__}"
        try:
            distributed = placement_class(config).distributed
        except ImportError:  # E008 says so
            distributed = True
        if cls.requires_cluster and not distributed:
            yield Error(
                f"The alarm backend {path} needs PLACEMENT 'redis' (its deliveries run in a "
                f"process apart, which must reach the objects' hosts), not "
                f"{config['PLACEMENT']!r}.",
                hint="Set DURABLE_OBJECTS['PLACEMENT'] to 'redis' (docs/topics/cluster.md), "
                "or use durable_objects.alarms.local.LocalAlarms.",
                id="durable_objects.E017",
            )
