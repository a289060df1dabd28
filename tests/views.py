"""HTTP views of the test processes (daphne in the cluster and WebSocket tests)."""

from django.http import JsonResponse

from durable_objects import DurableObjectError
from tests.objects_cluster import Tally


async def tally_increment(request, name):
    try:
        return JsonResponse(await Tally.objects.get_by_name(name).increment())
    except DurableObjectError as exc:
        return JsonResponse(
            {"error": type(exc).__name__, "message": str(exc), "retryable": exc.retryable},
            status=503,
        )


async def tally_state(request, name):
    try:
        return JsonResponse(await Tally.objects.get_by_name(name).state())
    except DurableObjectError as exc:
        return JsonResponse(
            {"error": type(exc).__name__, "message": str(exc), "retryable": exc.retryable},
            status=503,
        )
