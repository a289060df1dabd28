"""The output gate: an activation's commit, then the release of what its events held.

An event's replies and socket messages wait until the batch's commit returns (and, with
``DURABILITY = "replicated"``, until the replica holds it); a commit that fails fails
them all and resets the instance. The lease is checked before every commit and before a
read's answer, so a host that lost the object acknowledges nothing. See
docs/topics/events-and-transactions.md.
"""

from durable_objects.exceptions import FencedError, ObjectReset
from durable_objects.storage import alarm as alarm_row


class OutputGateMixin:
    """Committing an activation's batch and releasing its held outcomes (``Activation``)."""

    def _commit_on_loop(self):
        """True if the commit may run on the loop: it is read only, or nothing else is busy.

        An fsync on a commit thread lets other objects run meanwhile, but the trip there
        and back costs more than the fsync when this object is the only one at work.
        """
        return not self.shard.dirty or self.host.busy + self.host.starting <= 1

    def _check_lease(self):
        """Refuse to commit or answer once this host may no longer hold the object."""
        if not self.host.holds(self.hex):
            raise FencedError("This host's lease on the object ended; its work is dropped.")

    async def _commit(self):
        """Commit the batch (checking the lease first); return True if it wrote."""
        shard = self.shard
        if shard is None or not shard.in_transaction:
            return False
        if self._commit_on_loop():
            return self._commit_now()
        try:
            self._check_lease()
            await self.host.run_commit(shard.commit, self.epoch)
        except BaseException:
            if shard.is_open:
                shard.rollback()
            raise
        self.host.commits += 1
        self._committed()
        return True

    def _commit_now(self):
        shard = self.shard
        dirty = shard.dirty
        try:
            self._check_lease()
            shard.commit(self.epoch)
        except BaseException:
            if shard.is_open:
                shard.rollback()
            raise
        if dirty:
            self.host.commits += 1
            self._committed()
        return dirty

    def _committed(self):
        """After a commit that wrote: a changed alarm goes to the backend, then the catalog."""
        if self.alarm_changed:
            self.alarm_changed = False
            self.alarm_due = alarm_row.due_at(self.shard)
            self.host.alarms.schedule(self.cls._meta.label, self.hex, self.alarm_due)
        self.host.catalog.touch(self)

    async def _commit_held(self):
        """Commit, then release the held outcomes; on failure fail them and reset."""
        held, self.held = self.held, []
        try:
            wrote = await self._commit()
            if not wrote:  # a read in a cluster: answer only while the lease still holds
                self._check_lease()
            elif self.host.replicator is not None:  # the replica holds it, the claim holds
                await self.host.replicator.after_commit(self)
        except Exception as exc:
            cause = ObjectReset(f"Commit failed ({exc}); the object was reset.")
            cause.__cause__ = exc
            for event, _ in held:
                self.host.deliver(event, (False, event.encode_error(cause)))
            self.reset(cause)
            return False
        for event, outcome in held:
            outcome = event.released(outcome, self)  # before its own messages
            self._release_outbox(event, outcome)
            self.host.deliver(event, outcome)
        if self.abort_cause is not None or self.restored is not None:
            self.reset(self.abort_cause or self.restored)
        return True

    def _release_outbox(self, event, outcome):
        """Hand the event's held socket messages to the outbox; its writes are durable."""
        ops, event.outbox = event.outbox, None
        if ops and outcome[0]:
            self.host.outbox.release(self.hex, ops, self.serial)

    async def before_outgoing_call(self, event):
        """Commit the writes so far: an event is atomic between its calls to other objects."""
        if event not in self.stack:
            return
        shard = self.shard
        if shard is not None and shard.atomic_depth:
            raise RuntimeError(
                "Calls to other objects are not allowed inside storage.atomic() or "
                "transaction_sync(): the call commits the writes made before it."
            )
        self._end_event(ok=True)
        if not await self._commit_held():
            raise ObjectReset("The commit before an outgoing call failed; the object was reset.")
        self._release_outbox(event, (True, None))
