from django.shortcuts import render

from .objects import Counter


async def counter(request, name):
    """Show a counter; POST increments it inside the counter's one live instance."""
    stub = Counter.objects.get_by_name(name)
    if request.method == "POST":
        value = await stub.increment()
    else:
        value = await stub.value()
    return render(
        request,
        "counter/counter.html",
        {"name": name, "value": value, "object_id": str(stub.id), "label": "counter.Counter"},
    )
