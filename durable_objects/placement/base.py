"""The placement backend: which process holds each object, and how an event reaches it.

``DURABLE_OBJECTS["PLACEMENT"]`` names a subclass of ``BasePlacement`` by dotted path
(``"local"`` and ``"redis"`` are aliases, see ``durable_objects.conf``). The host makes
one instance at start and asks it, for every event, whether this process may run the
object (``holds``) or where to send the event (``route``).
"""


class BasePlacement:
    """What a host needs from a placement backend; subclasses implement the methods."""

    # True if the objects of one deployment live in several processes: an event may be
    # sent to another process, a holder can lose an object while it runs (its lease
    # ends), and sockets of an object may be held by consumers in other processes.
    distributed = False

    # The alarm backend used when ALARM_BACKEND is None.
    default_alarm_backend = "durable_objects.alarms.local.LocalAlarms"

    def __init__(self, host, config, *, can_host=True):
        self.host = host
        self.config = config
        # False for a process that only sends calls to others (a command, an RQ job).
        self.can_host = can_host
        # This process's token: socket rows name it as their holder.
        self.token = None

    def start(self):
        """Begin work on the host's loop (joining a cluster, heartbeats); called once."""

    async def ready(self):
        """Return once this process can place objects (it has joined its cluster)."""

    def holds(self, hex_id):
        """True if this process may run and answer for the object now."""
        raise NotImplementedError("subclasses of BasePlacement must provide a holds() method")

    def route(self, cls, object_id, event, hops=0):
        """Queue event here or send it to the object's holder; return its outcome's future."""
        raise NotImplementedError("subclasses of BasePlacement must provide a route() method")

    def hibernated(self, hex_id):
        """The object's instance left this host (hibernation, eviction): let others hold it."""

    def lease_lost(self, hex_id):
        """This host may no longer hold the object: drop its instance at once."""
        self.host.reset_object(hex_id, "This host lost the object's lease.")

    def holder_alive(self, token):
        """True if the process with token (another than this one) may still hold sockets."""
        return False

    async def holders(self, hex_ids):
        """{hex id: token of the process holding it, or None} as far as placement knows."""
        return {hex_id: None for hex_id in hex_ids}

    async def held_ids(self, limit):
        """Hex ids of objects held anywhere (at most limit), beyond this host's own."""
        return set()

    # -- replication (issue 14) ----------------------------------------------------------
    # An object's lineage names the machine that last held it and the replica generation
    # it writes to ("machine", "gen"), and the newest generation known to hold a whole
    # copy ("synced"). One machine (this backend) has no lineage to share: its own disk
    # is the newest copy.

    async def lineage(self, hex_id):
        """The object's lineage, a dict of str ({} if the placement keeps none)."""
        return {}

    async def confirm(self, hex_id, field=None, value=None, machine=None):
        """True if this host's claim on the object is still the newest one (fencing).

        With field, also record field=value (and machine) in the object's lineage, only
        if the claim still holds.
        """
        return True

    async def retire(self, hex_id, label, generations, floor):
        """Record that generations of the object are no longer restored from (their
        replica paths may be deleted after RETENTION); floor is the first one kept."""

    async def retired(self, before, limit):
        """Up to limit (label, hex id, generation) retired before the UNIX time before."""
        return []

    async def collected(self, generations):
        """Forget (label, hex id, generation) triples whose replica paths were deleted."""

    async def leave(self):
        """Give this host's objects back and stop (a clean shutdown, on the loop)."""

    def close(self):
        """Give this host's objects back without the event loop (the process exits)."""

    @classmethod
    def check(cls, config):
        """Return the system-check messages for this backend's settings (a list)."""
        return []
