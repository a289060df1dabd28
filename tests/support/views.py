"""HTTP views of the cluster tests' daphne processes."""

from django.http import JsonResponse

from durable_objects import DurableObjectError
from tests.support.objects_backup import Archive
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


# -- point in time (tests/test_pitr_machines.py) ----------------------------------------


async def _pitr_answer(call):
    """As _answer(), and a refused bookmark (a ValueError) as 400 with its message."""
    try:
        return await _answer(call)
    except ValueError as exc:
        body = {"error": type(exc).__name__, "message": str(exc), "retryable": False}
        return JsonResponse(body, status=400)


async def _archive_state(stub):
    import os

    notes, entries, pid = await stub.notes(), await stub.entries(), await stub.pid()
    return {"notes": notes, "entries": entries, "pid": pid, "view_pid": os.getpid()}


async def archive_add(request, name):
    stub = Archive.objects.get_by_name(name)
    return await _answer(_archive_added(stub, request.GET["body"], request.GET.get("colour")))


async def _archive_added(stub, body, colour):
    await stub.add(body, **({"colour": colour} if colour else {}))
    return await _archive_state(stub)


async def archive_state(request, name):
    return await _answer(_archive_state(Archive.objects.get_by_name(name)))


async def archive_bookmark(request, name):
    return await _answer(_bookmark(Archive.objects.get_by_name(name)))


async def _bookmark(stub):
    return {"bookmark": await stub.bookmark()}


async def archive_restore(request, name):
    from durable_objects.backups import arestore_object

    stub = Archive.objects.get_by_name(name)
    when = request.GET.get("when")

    async def restored():
        if "bookmark" in request.GET and request.GET.get("inside"):
            await stub.restore_to(request.GET["bookmark"])
        else:
            await arestore_object(
                Archive,
                stub.id,
                bookmark=request.GET.get("bookmark"),
                when=float(when) if when is not None else None,
            )
        return await _archive_state(stub)

    return await _pitr_answer(restored())
