import secrets

from django.core import signing
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from demo_site.objectinfo import object_panel
from demo_site.protocol import Refused, is_valid_name, parse_json
from demo_site.ratelimit.policy import BOOKING_BURST, BOOKING_RATE, limiter_for
from durable_objects.clients import allow_new_object, client_address

from .objects import BOOKER_COOKIE, BOOKER_SALT, LETTERS, MAX_PASSENGER, ROWS, Flight


def _booker(request):
    try:
        return request.get_signed_cookie(BOOKER_COOKIE, salt=BOOKER_SALT)
    except (KeyError, signing.BadSignature):
        return None


@ensure_csrf_cookie
def flight(request, code):
    """The seat map of a flight; it gives the browser a booker cookie."""
    if not is_valid_name(code):
        raise Http404("Flight codes are 1 to 40 letters, digits, '-' or '_'.")
    config = {"code": code, "rows": ROWS, "letters": LETTERS}
    response = render(
        request,
        "flights/flight.html",
        {
            "code": code,
            "config": config,
            "max_passenger": MAX_PASSENGER,
            "obj": object_panel(Flight, code),
        },
    )
    if _booker(request) is None:
        response.set_signed_cookie(
            BOOKER_COOKIE,
            secrets.token_hex(16),
            salt=BOOKER_SALT,
            max_age=30 * 24 * 3600,
            httponly=True,
            samesite="Lax",
        )
    return response


async def book(request, code):
    """POST {"seat", "passenger"}: book a seat; 200, or 4xx with {"error"}."""
    return await _act(request, code, "book")


async def cancel(request, code):
    """POST {"seat"}: give back one of this booker's seats."""
    return await _act(request, code, "cancel")


async def _act(request, code, action):
    if request.method != "POST":
        return JsonResponse({"error": "POST only."}, status=405)
    if not is_valid_name(code):
        return JsonResponse({"error": "No such flight."}, status=404)
    booker = _booker(request)
    if booker is None:
        return JsonResponse({"error": "Open the flight's page first."}, status=403)
    if len(request.body) > 1000:
        return JsonResponse({"error": "Request too large."}, status=413)
    try:
        data = parse_json(request.body)
    except Refused as error:
        return JsonResponse({"error": str(error)}, status=400)
    if not isinstance(data, dict):
        return JsonResponse({"error": "Send a JSON object."}, status=400)
    request.user = await request.auser()
    verdict = await limiter_for(request, "bookings").take(BOOKING_RATE, BOOKING_BURST)
    if not verdict["allowed"]:
        message = f"Too many bookings at once: retry in {verdict['retry_after']:g} s."
        return JsonResponse({"error": message}, status=429)
    stub = Flight.objects.get_by_name(code)
    if not allow_new_object(Flight, stub.id, client_address(request)):
        return JsonResponse(
            {"error": "Too many new flights from your address; try again in a minute."},
            status=429,
        )
    if action == "book":
        result = await stub.book(data.get("seat"), data.get("passenger"), booker)
    else:
        result = await stub.cancel(data.get("seat"), booker)
    return JsonResponse(result, status=200 if result["ok"] else result.pop("status"))
