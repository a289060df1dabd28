"""The web benchmark's Django views: the floor (no object) and a view that calls one."""

from django.http import HttpResponse
from django.urls import path

from benchmarks.objects import BenchHttpCounter


async def plain(request):
    """Django's floor: an async view that answers without an object."""
    return HttpResponse("1")


async def rpc(request, name):
    """A view that calls the object: one durable write, the result as the body."""
    return HttpResponse(str(await BenchHttpCounter.objects.get_by_name(name).increment()))


urlpatterns = [path("plain", plain), path("rpc/<str:name>", rpc)]
