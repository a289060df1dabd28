"""The rate limiter: one object per user or IP, a token bucket kept in its storage."""

import math

from demo_site.limits import TokenBucket
from durable_objects import DurableObject


class RateLimiter(DurableObject):
    class Meta:
        hibernate_after = 10

    def take(self, rate, burst):
        """Count one request against a bucket of burst, refilled at rate per second."""
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in (rate, burst)):
            raise TypeError("rate and burst must be finite numbers.")
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be above 0 and burst at least 1.")
        storage = self.ctx.storage
        bucket = TokenBucket(rate, burst, **storage.get("bucket", {}))
        allowed = bucket.take()
        totals = storage.get("totals", {"allowed": 0, "refused": 0})
        totals["allowed" if allowed else "refused"] += 1
        storage.put_many(
            {"bucket": {"tokens": bucket.tokens, "updated": bucket.updated}, "totals": totals}
        )
        return {
            "allowed": allowed,
            "remaining": math.floor(bucket.tokens),
            "retry_after": round(bucket.retry_after(), 2),
            "totals": totals,
        }

    def totals(self):
        return self.ctx.storage.get("totals", {"allowed": 0, "refused": 0})
