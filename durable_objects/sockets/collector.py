"""Keeping connected sockets out of Python's full garbage collections.

Each connected socket keeps about a hundred objects the collector tracks (daphne's and
autobahn's protocol, Twisted's transport, the consumer and its tasks), for as long as
it stays connected. A full collection walks every one of them: 0.1 s with 1,000
sockets, 1 to 3 s with 10,000 on a small machine, and the event loop stands still
meanwhile, so each one shows as a broadcast (and a heartbeat) that late.

With ``WEBSOCKET_GC_FREEZE`` (on by default) the process calls ``gc.freeze()`` a moment
(FREEZE_DELAY) after sockets connect: what is alive then moves to the permanent
generation, which no collection walks. Objects freed by their reference count go as
always; what a freeze keeps from the collector is only garbage in cycles (the objects of
sockets that have since closed, mostly). Once the sockets closed since the last thaw
pass CHURN_SHARE of those frozen (and MIN_CHURN), ``gc.unfreeze()``, one full
collection and a new freeze reclaim them: one pause per churn, not one every few
broadcasts. The thaw waits for a burst of closes to end (FREEZE_DELAY without one, at
most THAW_PATIENCE), so that thousands of sockets leaving at once cost one collection,
after them.
"""

import asyncio
import gc

from durable_objects.conf import get_config

FREEZE_DELAY = 1.0  # seconds after a socket connects before the freeze
CHURN_SHARE = 0.25  # closed sockets, as a share of those frozen, that make a thaw
MIN_CHURN = 256  # fewer closed sockets never make a thaw
THAW_PATIENCE = 10.0  # most seconds a thaw waits for a burst of closes to end

_state = {"open": 0, "frozen": 0, "closed": 0, "handle": None, "thaw": None, "due": 0.0}


def socket_opened():
    """A socket connected through this process; freeze soon after (once per burst)."""
    _state["open"] += 1
    if _state["handle"] is not None or not get_config()["WEBSOCKET_GC_FREEZE"]:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    _state["handle"] = loop.call_later(FREEZE_DELAY, _freeze)


def socket_closed():
    """A socket of this process closed; thaw and collect once enough have."""
    _state["open"] = max(0, _state["open"] - 1)
    if not _state["frozen"]:
        return
    _state["closed"] += 1
    if _state["closed"] < max(MIN_CHURN, _state["frozen"] * CHURN_SHARE):
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        collect()
        return
    now = loop.time()
    thaw = _state["thaw"]
    if thaw is None:
        _state["due"] = now + THAW_PATIENCE
    elif now + FREEZE_DELAY < _state["due"]:
        thaw.cancel()  # still closing: wait for the end of the burst
    else:
        return
    _state["thaw"] = loop.call_later(FREEZE_DELAY, collect)


def _freeze():
    _state["handle"] = None
    gc.freeze()
    _state["frozen"] = max(_state["frozen"], _state["open"])


def collect():
    """Thaw, collect everything and freeze again (what a churn of sockets triggers)."""
    thaw, _state["thaw"] = _state["thaw"], None
    if thaw is not None:
        thaw.cancel()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _state["frozen"] = _state["open"]
    _state["closed"] = 0


def reset():
    """Thaw and forget the counts (tests)."""
    for key in ("handle", "thaw"):
        if _state[key] is not None:
            _state[key].cancel()
    gc.unfreeze()
    _state.update(open=0, frozen=0, closed=0, handle=None, thaw=None, due=0.0)
