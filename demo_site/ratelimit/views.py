from asgiref.sync import async_to_sync
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from demo_site.objectinfo import object_panel

from .objects import RateLimiter
from .policy import DEMO_BURST, DEMO_RATE, client_key, limiter_for


@ensure_csrf_cookie
def page(request):
    """The rate limiter's page: buttons that send requests, and what the limiter said."""
    key = client_key(request)
    totals = async_to_sync(limiter_for(request).totals)()
    return render(
        request,
        "ratelimit/ratelimit.html",
        {
            "key": key,
            "obj": object_panel(RateLimiter, key),
            "totals": totals,
            "rate": DEMO_RATE,
            "burst": DEMO_BURST,
        },
    )


async def api(request):
    """POST: one request counted by the client's limiter: 200 if allowed, else 429."""
    if request.method != "POST":
        return JsonResponse({"error": "POST only."}, status=405)
    request.user = await request.auser()  # client_key() reads it; no sync access here
    verdict = await limiter_for(request).take(DEMO_RATE, DEMO_BURST)
    if verdict["allowed"]:
        return JsonResponse(verdict)
    response = JsonResponse(
        {**verdict, "error": f"Too many requests: retry in {verdict['retry_after']:g} s."},
        status=429,
    )
    response["Retry-After"] = str(max(1, round(verdict["retry_after"])))
    return response
