"""Token buckets: how many actions a socket (or a client) may take, and how fast."""

import time


class TokenBucket:
    """burst tokens at most, refilled at rate per second; each action takes one."""

    def __init__(self, rate, burst, tokens=None, updated=None):
        self.rate = rate
        self.burst = burst
        self.tokens = burst if tokens is None else tokens
        self.updated = time.time() if updated is None else updated

    def take(self, now=None):
        """Take a token if there is one; return True if the action is allowed."""
        now = time.time() if now is None else now
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def retry_after(self):
        """Seconds until the next token."""
        return max(0.0, (1 - self.tokens) / self.rate)


class SocketRates:
    """One bucket per socket, kept in the instance's memory.

    A wake from hibernation starts every socket with a full bucket: a socket that has
    been quiet for the whole hibernate_after period would have refilled anyway.
    """

    def __init__(self, rate, burst):
        self.rate = rate
        self.burst = burst
        self._buckets = {}

    def allow(self, ws):
        bucket = self._buckets.get(ws.id)
        if bucket is None:
            bucket = self._buckets[ws.id] = TokenBucket(self.rate, self.burst)
        return bucket.take()

    def forget(self, ws):
        self._buckets.pop(ws.id, None)

    @property
    def message(self):
        return f"Too fast: at most {self.rate:g} per second (bursts of {self.burst})."
