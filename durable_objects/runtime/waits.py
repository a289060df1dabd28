"""Who waits on whom: finding crossing call chains before they deadlock.

An event that calls another object waits on that call. Within one chain the waits never
close a cycle, because a call that comes back to an object running its chain is let in
(``Activation.submit``). Two independent chains can: X's event waits on a call queued at
Y behind Y's event, which waits on a call queued at X behind X's event. Nothing would
end that before ``CALL_TIMEOUT``.

So every call carries, besides the tokens of its chain, *waiter tokens*
``~<label>/<hex>:<token>``: "the event <token> running in that object waits on this
call". A call made by an event lists that event, the waiters its own chain carries and
those of the calls queued behind it (they wait on it too), so a call knows every event,
in any process, that waits on it as far as the caller knew when it sent it. The
receiving object checks them before it queues the call:

1. one of them is an event running in the receiving object itself: the call would wait
   behind an event that waits on the call. That closes the cycle (``find_deadlock``).
2. a call in flight: an event running here waits on a call to an object whose running
   event (one of the waiters) waits on this call, and that call of ours is not of its
   chain, so it is queued there. Both calls may have crossed on the wire, and each end
   sees the same; only the end with the greater object id refuses, so one call fails.

Waiter tokens are plain strings in the chain, so they cross processes with it; they
never equal an event's token, so they do not change which calls are re-entrant.
"""

from durable_objects.exceptions import DeadlockError

MARK = "~"
MAX_WAITERS = 64  # waiter tokens a call carries at most: a bound on the chain's size
MAX_QUEUE_SCAN = 256  # queued events looked at for the waiters behind an event


def waiter_token(activation, event):
    """The token saying that event, running in activation's object, waits on a call."""
    return f"{MARK}{activation.cls._meta.label}/{activation.hex}:{event.call_chain()[-1]}"


def parse(token):
    """(label, hex, event token) of a waiter token; None for an ordinary chain token."""
    if not token.startswith(MARK):
        return None
    label, _, rest = token[1:].partition("/")
    hex_id, _, event_token = rest.partition(":")
    return label, hex_id, event_token


def outgoing_chain(activation, running):
    """The chain of a call that running (an event of activation) makes now."""
    chain = running.call_chain()
    seen = set(chain)
    extra = []

    def add(token):
        if token not in seen and len(extra) < MAX_WAITERS:
            seen.add(token)
            extra.append(token)

    add(waiter_token(activation, running))
    for event in activation.stack:
        for token in event.chain:
            if token.startswith(MARK):
                add(token)
    for index, event in enumerate(activation.queue):
        if index >= MAX_QUEUE_SCAN or len(extra) >= MAX_WAITERS:
            break
        if event.chain and not (event.future is not None and event.future.done()):
            for token in event.chain:
                if token.startswith(MARK):
                    add(token)
    return (*chain, *extra)


def find_deadlock(activation, event):
    """A DeadlockError if queueing event in activation would close a wait cycle, else None.

    Called only when the event would wait behind a running event of the object.
    """
    running = {e.token for e in activation.stack if e.token is not None}
    if not running:
        return None
    waiters = [parsed for token in event.chain if (parsed := parse(token)) is not None]
    if not waiters:
        return None
    caller = _caller(event.chain)
    for _label, hex_id, token in waiters:
        if hex_id == activation.hex and token in running:
            return _error(activation, caller)
    for label, hex_id, token in waiters:  # crossing in flight
        if hex_id == activation.hex or activation.hex < hex_id:
            continue
        for waiting, target, call in activation.outgoing:
            if target == hex_id and waiting in activation.stack and token not in call.chain:
                return _error(activation, caller or (label, hex_id))
    return None


def _caller(chain):
    """(label, hex) of the object whose event made the call, or None.

    Each hop appends its event's token and then its waiter tokens, the calling event's
    own first: so it is the first waiter token after the last ordinary token.
    """
    caller = None
    for index, token in enumerate(chain):
        parsed = parse(token)
        if parsed is not None and index > 0 and not chain[index - 1].startswith(MARK):
            caller = parsed[:2]
    return caller


def describe(label, hex_id, name=None):
    if name is not None:
        return f"{label} {name!r} ({hex_id[:12]}…)"
    return f"{label} {hex_id[:12]}…"


def _error(activation, caller):
    here = describe(activation.cls._meta.label, activation.hex, activation.id.name)
    there = "another object"
    if caller is not None:
        local = activation.host.find_activation(caller[1])  # its name, if it lives here
        there = describe(*caller, local.id.name if local is not None else None)
    return DeadlockError(
        f"Deadlock: the call from {there} to {here} was refused. {here} is running an "
        f"event that waits (through its calls) on {there}, whose event waits on this "
        "call: two call chains crossed, and waiting would last until CALL_TIMEOUT. Retry, "
        "or make calls between these objects go one way."
    )
