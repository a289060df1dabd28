from asgiref.sync import sync_to_async
from django.http import Http404, HttpResponse
from django.shortcuts import render

from demo_site.objectinfo import object_panel
from demo_site.protocol import is_valid_name
from durable_objects.clients import allow_new_object, client_address

from .objects import Counter


async def counter(request, name):
    """Show a counter; POST increments it inside the counter's one live instance."""
    if not is_valid_name(name):
        raise Http404("Counter names are 1 to 40 letters, digits, '-' or '_'.")
    stub = Counter.objects.get_by_name(name)
    # Reading a counter that has no storage creates none; an increment does.
    if request.method == "POST" and not allow_new_object(
        Counter, stub.id, client_address(request)
    ):
        return HttpResponse(
            "Too many new counters from your address; try again in a minute.",
            status=429,
            content_type="text/plain",
        )
    value = await (stub.increment() if request.method == "POST" else stub.value())
    return render(
        request,
        "counter/counter.html",
        {"name": name, "value": value, "obj": await sync_to_async(object_panel)(Counter, name)},
    )
