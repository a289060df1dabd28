"""The catalog and objects.all(), stub.fetch(), and durable_objects.testing."""

import asyncio
import io
import json

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.test import RequestFactory

from durable_objects.models import ObjectRecord
from durable_objects.runtime.lifecycle import get_host, reset_host
from durable_objects.testing import evict, evict_all, is_active, list_ids, run_in_durable_object
from tests.support.objects import Counter, Plain

# -- catalog -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_catalog_records_objects_with_storage():
    named = Counter.objects.get_by_name("catalogued")
    async_to_sync(named.increment)()
    unnamed = Counter.objects.get(Counter.objects.new_unique_id())
    async_to_sync(unnamed.increment)()
    async_to_sync(Plain.objects.get_by_name("no-storage").add)(1, 2)
    reset_host()  # shutdown writes what is pending
    rows = {r.object_id: r for r in ObjectRecord.objects.all()}
    assert set(rows) == {str(named.id), str(unnamed.id)}
    record = rows[str(named.id)]
    assert (record.label, record.name) == ("tests.Counter", "catalogued")
    assert record.size_bytes > 0
    assert record.created_at <= record.last_active_at
    assert rows[str(unnamed.id)].name is None


@pytest.mark.django_db(transaction=True)
def test_all_lists_ids_with_names_including_unflushed_ones():
    names = ["b", "a", "c"]
    for name in names:
        async_to_sync(Counter.objects.get_by_name(name).increment)()
    ids = list(Counter.objects.all())
    assert sorted(i.name for i in ids) == sorted(names) and len(ids) == 3
    assert ids == sorted(ids, key=str)
    assert Counter.objects.all().count() == 3
    assert list(Plain.objects.all()) == []


@pytest.mark.django_db(transaction=True)
async def test_all_iterates_asynchronously():
    await Counter.objects.get_by_name("async-listed").increment()
    listed = [object_id async for object_id in Counter.objects.all()]
    assert [i.name for i in listed] == ["async-listed"]
    assert await Counter.objects.all().acount() == 1


@pytest.mark.django_db(transaction=True)
async def test_catalog_is_written_in_the_background():
    stub = Counter.objects.get_by_name("background-catalog")
    await stub.increment()
    for _ in range(100):  # CATALOG_FLUSH_INTERVAL is 0.1 s in the test settings
        await asyncio.sleep(0.05)
        if await ObjectRecord.objects.filter(object_id=str(stub.id)).aexists():
            break
    record = await ObjectRecord.objects.aget(object_id=str(stub.id))
    assert record.name == "background-catalog"


# -- fetch -------------------------------------------------------------------------------


async def test_fetch_forwards_a_django_request_and_returns_the_response():
    stub = Counter.objects.get_by_name("http")
    request = RequestFactory().post(
        "/things/?q=search", data="payload", content_type="text/plain", HTTP_X_TEST="hdr"
    )
    response = await stub.fetch(request)
    assert response.status_code == 201
    assert response["X-From-Object"] == "yes"
    assert response.cookies["seen"].value == "1"
    assert json.loads(response.content) == {
        "method": "POST",
        "path": "/things/",
        "query": "search",
        "header": "hdr",
        "body": "payload",
    }
    again = await stub.fetch("/other?q=2")
    assert json.loads(again.content)["body"] == "payload"
    assert json.loads(again.content)["query"] == "2"


async def test_fetch_without_a_handler_or_with_a_bad_return_is_an_error():
    with pytest.raises(NotImplementedError, match="does not define fetch"):
        await Plain.objects.get_by_name("no-fetch").fetch("/")
    with pytest.raises(TypeError, match="stub.fetch\\(\\) takes a Django HttpRequest"):
        await Counter.objects.get_by_name("x").fetch(42)


# -- testing helpers ---------------------------------------------------------------------


async def test_run_in_durable_object_sees_the_live_instance():
    stub = Counter.objects.get_by_name("inside")
    await stub.remember("x")
    memory = await run_in_durable_object(stub, lambda obj, ctx: list(obj.memory))
    assert memory == ["x"]

    async def write(obj, ctx):
        ctx.storage.put("value", 41)
        return ctx.id.name

    assert await run_in_durable_object(stub, write) == "inside"
    assert await stub.increment() == 42


async def test_run_in_durable_object_raises_the_original_exception():
    marker = LookupError("original")

    def fail(obj, ctx):
        raise marker

    with pytest.raises(LookupError) as info:
        await run_in_durable_object(Counter.objects.get_by_name("raise"), fail)
    assert info.value is marker


async def test_evict_drops_one_instance_and_evict_all_every_instance():
    a, b = Counter.objects.get_by_name("ev-a"), Counter.objects.get_by_name("ev-b")
    await a.remember("a")
    await b.remember("b")
    await evict(a)
    assert not is_active(a) and is_active(b)
    assert await a.remember("again") == ["again"]
    await evict_all()
    assert not is_active(a) and not is_active(b)
    assert get_host().activations == {}


def test_evict_from_sync_code():
    stub = Counter.objects.get_by_name("sync-evict")
    async_to_sync(stub.remember)("x")
    async_to_sync(evict)(stub)
    assert async_to_sync(stub.remember)("y") == ["y"]


async def test_list_ids_lists_objects_with_a_shard():
    names = ["z", "y"]
    for name in names:
        await Counter.objects.get_by_name(name).increment()
    await Counter.objects.get_by_name("no-write").my_name()
    listed = await sync_to_async(list_ids)(Counter)
    expected = sorted(str(Counter.objects.id_from_name(n)) for n in names)
    assert [str(i) for i in listed] == expected


@pytest.mark.django_db(transaction=True)
def test_rebuild_catalog_records_every_shard(storage_root):
    from django.core.management import call_command

    for name in ("r1", "r2"):
        async_to_sync(Counter.objects.get_by_name(name).increment)()
    reset_host()
    ObjectRecord.objects.all().delete()
    (storage_root / "tests" / "Counter" / "zz").mkdir(parents=True)
    (storage_root / "tests" / "Counter" / "zz" / "junk.sqlite3").write_bytes(b"not sqlite")
    out = io.StringIO()
    call_command("rebuild_catalog", stdout=out)
    assert "Recorded 2 objects" in out.getvalue()
    assert sorted(ObjectRecord.objects.values_list("name", flat=True)) == ["r1", "r2"]
    assert all(size > 0 for size in ObjectRecord.objects.values_list("size_bytes", flat=True))


async def test_fetch_parses_a_form_post_inside_the_object():
    from django.http import JsonResponse

    from durable_objects.testing import run_in_durable_object

    request = RequestFactory().post("/form/", {"seat": "3A", "names": ["a", "b"]})
    stub = Plain.objects.get_by_name("form")

    def handler(obj, ctx):
        def fetch(req):
            return JsonResponse({"seat": req.POST["seat"], "names": req.POST.getlist("names")})

        obj.fetch = fetch

    await run_in_durable_object(stub, handler)
    response = await stub.fetch(request)
    assert json.loads(response.content) == {"seat": "3A", "names": ["a", "b"]}
