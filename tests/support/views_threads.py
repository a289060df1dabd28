"""Views that report on the thread of a request's thread-sensitive sync work.

Each thread that serves a request counts the requests it has served (an attribute on
the thread), so a response says whether its thread was new (1) or served others before.
"""

import threading
import time

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import JsonResponse, StreamingHttpResponse
from django.urls import path

_in_flight = 0
_most = 0  # the most requests in together() at once
_lock = threading.Lock()


def _serve():
    """This thread's (native id, requests served so far, counting this one)."""
    thread = threading.current_thread()
    thread.do_served = getattr(thread, "do_served", 0) + 1
    return {"thread": threading.get_native_id(), "served": thread.do_served}


def sync_view(request):
    return JsonResponse(_serve())


async def async_view(request):
    first = await sync_to_async(_serve)()
    second = await sync_to_async(threading.get_native_id)()
    return JsonResponse({**first, "again": second})


async def plain(request):
    """An async view with no sync work of its own."""
    return JsonResponse({"plain": True})


class Closing:
    """A response's content that says which thread closed it (``closed_on``)."""

    closed_on = []

    async def __aiter__(self):  # async, as a stream served over ASGI should be
        yield b"streamed"

    def close(self):
        Closing.closed_on.append(threading.get_ident())


def streamed(request):
    return StreamingHttpResponse(Closing())


def together(request):
    """Wait (up to 10 s) until ?n requests have been in this view at once; say the most."""
    global _in_flight, _most
    wanted = int(request.GET["n"])
    with _lock:
        _in_flight += 1
        _most = max(_most, _in_flight)
    try:
        end = time.monotonic() + 10
        while _most < wanted and time.monotonic() < end:
            time.sleep(0.01)
        return JsonResponse({**_serve(), "met": _most})
    finally:
        with _lock:
            _in_flight -= 1


def slow(request):
    time.sleep(float(request.GET["seconds"]))
    return JsonResponse(_serve())


def database(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        (one,) = cursor.fetchone()
    return JsonResponse({**_serve(), "one": one})


urlpatterns = [
    path("sync/", sync_view),
    path("async/", async_view),
    path("plain/", plain),
    path("streamed/", streamed),
    path("together/", together),
    path("slow/", slow),
    path("database/", database),
]
