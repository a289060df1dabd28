"""durable_objects.asgi: Django's handler with its per-request threads kept in a pool.

Real server processes (daphne, uvicorn, granian) serve tests.support.asgi_pooled; the
views of tests.support.views_threads say which thread ran each request's sync work and
how many requests that thread has served.
"""

import asyncio
import http.client
import json
import socket
import threading
import time

import pytest

from durable_objects.asgi import ASGIHandler, ExecutorPool, PooledExecutor
from durable_objects.testing.servers import http_scope
from tests.support.servers import SERVERS, free_port, start_server, stop


def serve(kind, application, tmp_path):
    port = free_port()
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.support.settings",
        "DO_TEST_STORAGE_ROOT": str(tmp_path / f"objects-{kind}"),
    }
    return start_server(kind, application, port, env), port


@pytest.fixture(params=SERVERS)
def pooled(request, tmp_path):
    """(kind, port) of a server running the pooled handler."""
    process, port = serve(request.param, "tests.support.asgi_pooled:application", tmp_path)
    yield request.param, port
    stop(process)


def get(port, path, timeout=20):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, (path, response.status, body[:500])
        return json.loads(body)
    finally:
        connection.close()


def until_a_thread_serves_again(port, deadline=20):
    """Ask until a request lands on a thread that has served before (its handler gave
    it back after its response); that answer."""
    end = time.monotonic() + deadline
    while True:
        answer = get(port, "/threads/sync/")
        if answer["served"] >= 2 or time.monotonic() > end:
            return answer
        time.sleep(0.05)


def test_one_request_after_another_reuses_the_thread(pooled, tmp_path):
    _, port = pooled
    served = [get(port, "/threads/sync/") for _ in range(8)]
    # A client's next request may come while the last one's handler is still closing its
    # response, so a sequence of requests is served by one or two threads, not eight.
    assert len({answer["thread"] for answer in served}) <= 2
    assert max(answer["served"] for answer in served) >= 4
    # Django's own handler, for contrast: a new thread for every request.
    process, stock = serve("uvicorn", "tests.support.asgi:application", tmp_path)
    try:
        assert {get(stock, "/threads/sync/")["served"] for _ in range(4)} == {1}
    finally:
        stop(process)


def test_an_async_views_sync_calls_share_its_thread(pooled):
    _, port = pooled
    answers = [get(port, "/threads/async/") for _ in range(6)]
    assert all(answer["thread"] == answer["again"] for answer in answers)
    assert max(answer["served"] for answer in answers) >= 3


async def test_requests_in_flight_together_have_a_thread_each(pooled):
    _, port = pooled
    answers = await asyncio.gather(
        *(asyncio.to_thread(get, port, "/threads/together/?n=3") for _ in range(3))
    )
    # All three were in the view at once: their sync work ran at once, on 3 threads.
    assert [answer["met"] for answer in answers] == [3, 3, 3]
    assert len({answer["thread"] for answer in answers}) == 3
    # Their handlers give the threads back after the responses, and keep them.
    assert until_a_thread_serves_again(port)["served"] >= 2


def test_a_sync_view_uses_the_database_on_a_pooled_thread(pooled):
    _, port = pooled
    answers = [get(port, "/threads/database/") for _ in range(6)]
    assert [answer["one"] for answer in answers] == [1] * 6
    assert max(answer["served"] for answer in answers) >= 3


def test_a_client_gone_during_a_sync_view_leaves_the_pool_serving(tmp_path):
    process, port = serve("uvicorn", "tests.support.asgi_pooled:application", tmp_path)
    try:
        assert get(port, "/threads/sync/")["served"] == 1
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.sendall(b"GET /threads/slow/?seconds=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)  # inside the view now
        client.close()
        assert get(port, "/threads/sync/")["served"] >= 1  # served meanwhile
        assert until_a_thread_serves_again(port)["served"] >= 2
    finally:
        stop(process)


async def test_a_disconnect_waits_for_the_view_then_gives_the_thread_back():
    pool = ExecutorPool(idle=4)
    handler = ASGIHandler(pool)
    events = [{"type": "http.request", "body": b"", "more_body": False}]
    sent = []

    async def receive():
        if events:
            return events.pop(0)
        await asyncio.sleep(0.1)  # the client goes while the view sleeps
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await handler(http_scope("/threads/slow/", b"seconds=2"), receive, send)
    assert sent == []  # nothing answered to a client that is gone
    # Django's request_finished ran behind the view, on its thread: the thread is idle
    # and back in the pool.
    assert len(pool) == 1
    executor = pool.take()
    assert executor.submit(lambda: "idle").result(timeout=1) == "idle"


async def test_a_cancelled_request_does_not_give_its_thread_back():
    pool = ExecutorPool(idle=4)
    handler = ASGIHandler(pool)
    events = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if events:
            return events.pop(0)
        await asyncio.Event().wait()  # no disconnect: the server cancels the request

    async def send(message):
        pass

    request = handler(http_scope("/threads/slow/", b"seconds=2"), receive, send)
    task = asyncio.ensure_future(request)
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(pool) == 0  # its view may still be running: no later request waits for it


class CountingExecutor(PooledExecutor):
    """A pooled executor that counts the pieces of work it is given."""

    def __init__(self):
        super().__init__()
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs):
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


async def request_through(handler, path):
    """Send one GET through handler in-process; (status, body)."""
    events = [{"type": "http.request", "body": b"", "more_body": False}]
    sent = []

    async def receive():
        if events:
            return events.pop(0)
        await asyncio.Event().wait()

    async def send(message):
        sent.append(message)

    await handler(http_scope(path), receive, send)
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return sent[0]["status"], body


async def submitted_for(monkeypatch, path, *, as_django=False, executor=None, first=None):
    """(status, body, how many pieces of work went to the request's thread) of one request
    through the pooled handler, lending it executor (a new CountingExecutor if None).

    With as_django, the handler runs Django's own handle() (every hop Django makes). The
    test settings' middleware makes hops of its own, so the tests compare the two. The
    request runs on a loop of its own in a new thread (the test session's thread holds
    database connections of other tests); first(), if given, runs there just before it,
    in its context.
    """
    import durable_objects.asgi

    monkeypatch.setattr(durable_objects.asgi, "HANDLE_MATCHES_DJANGO", not as_django)
    executor = executor or CountingExecutor()
    pool = ExecutorPool(idle=4)
    pool.give_back(executor)  # the next take() lends it
    before = executor.submitted

    async def request():
        if first is not None:
            first()
        return await request_through(ASGIHandler(pool), path)

    status, body = await asyncio.to_thread(asyncio.run, request())
    assert len(pool) == 1  # given back
    return status, body, executor.submitted - before


async def test_an_async_view_on_a_thread_without_connections_makes_no_hop_of_djangos(
    monkeypatch,
):
    *django_answer, djangos = await submitted_for(monkeypatch, "/threads/plain/", as_django=True)
    executor = CountingExecutor()
    *answer, ours = await submitted_for(monkeypatch, "/threads/plain/", executor=executor)
    assert answer == django_answer == [200, b'{"plain": true}']
    # Two pieces of work less: Django's request_started receivers had no connection to
    # reset or close on that thread, and response.close() had nothing for a thread.
    assert ours == djangos - 2
    assert not executor.has_connections


@pytest.mark.parametrize("name", ["request_started", "request_finished"])
async def test_a_receiver_of_ones_own_gets_the_signal_on_the_requests_thread(monkeypatch, name):
    from django.core import signals

    signal = getattr(signals, name)
    *_, djangos = await submitted_for(monkeypatch, "/threads/plain/", as_django=True)
    executor = CountingExecutor()
    heard = []

    def receiver(sender, **kwargs):
        heard.append(threading.get_ident())

    signal.connect(receiver)
    try:
        status, _, ours = await submitted_for(monkeypatch, "/threads/plain/", executor=executor)
    finally:
        signal.disconnect(receiver)
    assert status == 200
    # That signal goes as Django sends it; the other hop is still left out.
    assert ours == djangos - 1
    thread = executor.submit(threading.get_ident).result(timeout=5)
    assert heard == [thread]
    assert thread != threading.get_ident()  # the request's thread, not the loop's


async def test_a_response_with_resources_is_closed_on_the_requests_thread(monkeypatch):
    from tests.support.views_threads import Closing

    Closing.closed_on.clear()
    executor = CountingExecutor()
    status, body, _ = await submitted_for(monkeypatch, "/threads/streamed/", executor=executor)
    assert (status, body) == (200, b"streamed")
    thread = executor.submit(threading.get_ident).result(timeout=5)
    assert Closing.closed_on == [thread]
    assert thread != threading.get_ident()


async def test_a_cache_open_in_the_requests_context_is_closed_on_its_thread(monkeypatch):
    from django.core.cache import caches

    def open_the_cache():
        caches["default"]

    *_, djangos = await submitted_for(monkeypatch, "/threads/plain/", as_django=True)
    status, _, ours = await submitted_for(monkeypatch, "/threads/plain/", first=open_the_cache)
    assert status == 200
    # close_caches has a cache to close: response.close() goes to the thread.
    assert ours == djangos - 1


async def test_a_connection_in_the_requests_context_keeps_the_close_on_its_thread(monkeypatch):
    from django.db import connections

    def make_a_connection():
        connections["default"]  # a wrapper, never opened

    *_, djangos = await submitted_for(monkeypatch, "/threads/plain/", as_django=True)
    status, _, ours = await submitted_for(monkeypatch, "/threads/plain/", first=make_a_connection)
    assert status == 200
    # close_old_connections would have a connection to look at on the loop's thread.
    assert ours == djangos - 1


async def test_a_thread_that_made_a_connection_gets_djangos_receivers_there(monkeypatch):
    from django.db import connections

    *_, djangos = await submitted_for(monkeypatch, "/threads/plain/", as_django=True)
    executor = CountingExecutor()
    # Work that leaves a connection wrapper on the thread (Django's connections belong to
    # the thread that made them; this one is never opened).
    executor.submit(lambda: connections["default"]).result(timeout=5)
    assert executor.has_connections
    status, _, ours = await submitted_for(monkeypatch, "/threads/plain/", executor=executor)
    assert status == 200
    assert ours == djangos


def test_the_handle_copy_is_checked_against_the_installed_djangos(monkeypatch):
    import django.urls
    from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler

    import durable_objects.asgi

    # The installed Django's handle() is the one the copy was made from.
    assert durable_objects.asgi.handle_matches_django()
    # The same statements with a name bound to another object: refused.
    monkeypatch.setattr(durable_objects.asgi, "get_script_prefix", django.urls.get_script_prefix)
    assert not durable_objects.asgi.handle_matches_django()
    monkeypatch.undo()

    async def handle(self, scope, receive, send):  # a Django whose handle() changed
        await self.request_started(scope, None)

    monkeypatch.setattr(DjangoASGIHandler, "handle", handle)
    assert not durable_objects.asgi.handle_matches_django()


def test_the_pool_keeps_at_most_idle_executors():
    pool = ExecutorPool(idle=1)
    first, second = pool.take(), pool.take()
    assert first is not second
    pool.give_back(first)
    pool.give_back(second)  # one is idle already: this one's thread is let go
    assert pool.take() is first
    with pytest.raises(RuntimeError, match="shutdown"):
        second.submit(print)
    pool.discard(first)
    with pytest.raises(RuntimeError, match="shutdown"):
        first.submit(print)
    third = pool.take()
    assert third is not first
    pool.give_back(third)
    assert len(pool) == 1
    pool.close()  # the idle ones' threads end
    assert len(pool) == 0
    with pytest.raises(RuntimeError, match="shutdown"):
        third.submit(print)
    with pytest.raises(ValueError, match="idle must be 0 or more"):
        ExecutorPool(idle=-1)


async def test_the_handler_refuses_a_websocket_scope():
    handler = ASGIHandler(ExecutorPool(idle=0))
    with pytest.raises(ValueError, match="only handle ASGI/HTTP connections, not websocket"):
        await handler({"type": "websocket"}, None, None)


def test_an_asgiref_without_executor_contexts_is_refused_by_name(monkeypatch):
    import importlib
    import sys

    import asgiref.sync
    from django.core.exceptions import ImproperlyConfigured

    class OldThreadSensitiveContext:  # asgiref 3.12's: no executor= to lend a thread
        def __init__(self):
            pass

    monkeypatch.setattr(asgiref.sync, "ThreadSensitiveContext", OldThreadSensitiveContext)
    monkeypatch.delitem(sys.modules, "durable_objects.asgi")
    with pytest.raises(ImproperlyConfigured, match=r"needs asgiref 3\.13 or later"):
        importlib.import_module("durable_objects.asgi")
