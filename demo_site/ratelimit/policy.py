"""Who a request counts against, and the limits the demo applies."""

from .objects import RateLimiter

DEMO_RATE, DEMO_BURST = 1.0, 5  # the rate limiter's page: 5 at once, then 1 a second
BOOKING_RATE, BOOKING_BURST = 2.0, 20  # seat bookings and cancellations per client


def client_key(request):
    """Name the client: user:<username> when logged in, else ip:<address>."""
    if request.user.is_authenticated:
        return f"user:{request.user.get_username()}"
    return f"ip:{request.META.get('REMOTE_ADDR') or 'unknown'}"


def limiter_for(request, purpose=None):
    """The RateLimiter of this client (and purpose: each has a bucket of its own)."""
    key = client_key(request)
    return RateLimiter.objects.get_by_name(f"{purpose}/{key}" if purpose else key)
