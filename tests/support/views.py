"""HTTP views of the cluster tests' daphne processes."""

from django.http import JsonResponse

from durable_objects import DurableObjectError
from tests.support.objects_cluster import Holdings, Tally


async def _answer(call):
    """The call's result as JSON, or its error with 503 (and whether it is retryable)."""
    try:
        return JsonResponse(await call)
    except DurableObjectError as exc:
        body = {"error": type(exc).__name__, "message": str(exc), "retryable": exc.retryable}
        return JsonResponse(body, status=503)


async def tally_increment(request, name):
    return await _answer(Tally.objects.get_by_name(name).increment())


async def tally_slow_increment(request, name):
    seconds = float(request.GET["seconds"])
    return await _answer(Tally.objects.get_by_name(name).slow_increment(seconds))


async def tally_state(request, name):
    return await _answer(Tally.objects.get_by_name(name).state())


async def ledger_add(request, name):
    alarm_in = request.GET.get("alarm_in")
    alarm_in = None if alarm_in is None else float(alarm_in)
    return await _answer(Holdings.objects.get_by_name(name).add(request.GET["text"], alarm_in))


async def ledger_state(request, name):
    return await _answer(Holdings.objects.get_by_name(name).state())
