"""Django's ASGI handler with its per-request threads kept in a pool.

Django runs each request in ``ThreadSensitiveContext()``: the request's thread-sensitive
sync work (the ``request_started`` and ``request_finished`` receivers, a sync view or
middleware, ``response.close()``) runs on one thread of its own, made for the request.
asgiref starts that thread on the request's first such call and, on the way out, joins
it from yet another new thread: two thread starts and two joins per request, even for an
async view with no sync code of its own. On a two-core machine that was most of the
server's CPU for a request to a plain async view (``docs/topics/servers.md``).

``get_asgi_application()`` here returns the same handler, except that each request
takes a single-thread executor from a pool and gives it back when it is done, through
asgiref's own ``ThreadSensitiveContext(executor=...)``, which exists for this ("the
calling code is responsible for the executor lifetime ... for example in a pool"). A
request still has one thread to itself for its sync work, and requests in flight at once
still have one thread each, so nothing changes for code that keeps state on its thread
(database connections, ``threading.local``): a pooled thread serves one request after
another, as the threads of a WSGI server do, and Django's ``request_finished`` receivers
close what a request leaves behind, as under WSGI.

The two thread hops Django still makes for every request are also left out where they
would do nothing. Django sends ``request_started`` through ``asend()``, which runs its
sync receivers on the request's thread, and closes the response with
``sync_to_async(response.close)``, which sends ``request_finished`` there: a hop there
and back each, together about half of the server's CPU for a plain async view on two
cores. Django's own receivers only touch the database connections of the thread they
run on, the caches opened in the context and its URLconf. So when they are the only
receivers and there is nothing for them to do (the request's pooled thread has made no
connection, which ``PooledExecutor`` notes after each piece of work), the handler does
not send ``request_started``, and closes the response on the loop when it has no
resource but the request's body and the loop's context holds no connection, no cache
and no URLconf (``close_needs_no_thread()``). Any other receiver, resource or state gets
Django's hop. ``handle()`` is Django 5.2's with those two calls changed; if the
installed Django's differs from the one it was copied from, the handler uses Django's
own (``HANDLE_MATCHES_DJANGO``).
"""

import ast
import asyncio
import inspect
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import asgiref
import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.cache import caches, close_caches
from django.core.exceptions import ImproperlyConfigured, RequestAborted
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.handlers.asgi import get_script_prefix
from django.core.handlers.base import reset_urlconf
from django.db import close_old_connections, connections, reset_queries
from django.http.response import HttpResponseBase
from django.urls import get_urlconf, set_script_prefix

if "executor" not in inspect.signature(ThreadSensitiveContext).parameters:
    raise ImproperlyConfigured(
        "durable_objects.asgi needs asgiref 3.13 or later, for "
        f"ThreadSensitiveContext(executor=...); this is asgiref {asgiref.__version__}. "
        "Upgrade it (pip install 'asgiref>=3.13'), or use Django's "
        "django.core.asgi.get_asgi_application()."
    )

__all__ = ["ASGIHandler", "ExecutorPool", "PooledExecutor", "get_asgi_application"]

IDLE_THREADS = 32  # executors kept for later requests; more are made while busier


class PooledExecutor(ThreadPoolExecutor):
    """A single-thread executor that notes whether its thread has made a database connection.

    ``has_connections`` turns true after the first piece of work that leaves a
    connection of ``django.db.connections`` on the thread (Django's connections belong
    to the thread that made them), and stays true.
    """

    def __init__(self, name="django-request"):
        super().__init__(max_workers=1, thread_name_prefix=name)
        self.has_connections = False

    def submit(self, fn, /, *args, **kwargs):
        return super().submit(self._run, fn, args, kwargs)

    def _run(self, fn, args, kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            if not self.has_connections and connections.all(initialized_only=True):
                self.has_connections = True


class ExecutorPool:
    """Single-thread executors, each lent to one block at a time, kept while idle."""

    def __init__(self, idle=IDLE_THREADS, name="django-request"):
        if idle < 0:
            raise ValueError(f"idle must be 0 or more, not {idle!r}.")
        self.idle = idle
        self.name = name
        self._free = []
        self._lock = threading.Lock()  # several loops (servers' threads) may share it

    def __len__(self):
        """How many executors are idle, kept for the next blocks."""
        return len(self._free)

    def take(self):
        with self._lock:
            if self._free:
                return self._free.pop()
        return PooledExecutor(self.name)

    def give_back(self, executor):
        """Keep executor for another block, or let its thread end if enough are idle."""
        with self._lock:
            if len(self._free) < self.idle:
                self._free.append(executor)
                return
        executor.shutdown(wait=False)

    def discard(self, executor):
        """Let the thread end once its work is done: its block did not end cleanly."""
        executor.shutdown(wait=False)

    def close(self):
        with self._lock:
            free, self._free = self._free, []
        for executor in free:
            executor.shutdown(wait=False)


# Django's receivers of request_started (django/db/__init__.py): both act on the database
# connections of the thread they run on, and on nothing else.
CONNECTION_RECEIVERS = frozenset({reset_queries, close_old_connections})
# Django's receivers of request_finished: the thread's connections, the context's caches
# (django/core/cache/__init__.py) and its URLconf (django/core/handlers/base.py).
FINISHED_RECEIVERS = frozenset({close_old_connections, close_caches, reset_urlconf})


class ASGIHandler(DjangoASGIHandler):
    """Django's ``ASGIHandler``, each request's sync thread lent from an ``ExecutorPool``."""

    def __init__(self, pool=None):
        super().__init__()
        self.pool = pool if pool is not None else ExecutorPool()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":  # as Django's own handler says it
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self.pool.take()
        try:
            async with ThreadSensitiveContext(executor=executor):
                if HANDLE_MATCHES_DJANGO:
                    await self.handle(scope, receive, send, executor)
                else:
                    await super().handle(scope, receive, send)
        except BaseException:
            # Cancelled or failed: work it started may still be queued on the thread, so
            # no later request waits behind it.
            self.pool.discard(executor)
            raise
        # handle() awaited every thread-sensitive call it made, and its last ones
        # (response.close(), request_finished) queue behind any still running, so the
        # executor has nothing left to do.
        self.pool.give_back(executor)

    async def request_started(self, scope, executor):
        """Send ``request_started``, unless its receivers would have nothing to do.

        They would not when they are Django's own (``CONNECTION_RECEIVERS``) and the
        request's thread has never made a database connection: then the thread hop that
        ``asend()`` makes for sync receivers is skipped.
        """
        signal = signals.request_started
        if not getattr(executor, "has_connections", True):
            sync_receivers, async_receivers = signal._live_receivers(self.__class__)
            if not async_receivers and CONNECTION_RECEIVERS.issuperset(sync_receivers):
                return
        await signal.asend(sender=self.__class__, scope=scope)

    async def close_response(self, response, executor):
        """``response.close()``: on the loop when no part of it needs the request's thread.

        It closes the response's resources and sends ``request_finished``. On the loop it
        saves a thread hop, and runs there only when no part needs a thread: no resource
        to close but the request's body (``close()`` not overridden, no uploaded files),
        only Django's own receivers (``FINISHED_RECEIVERS``) with nothing to do: no
        database connection on the request's thread nor on this one, no cache opened in
        this request's context, no URLconf set in it.
        """
        if self.close_needs_no_thread(response, executor):
            response.close()
        else:
            await sync_to_async(response.close)()

    def close_needs_no_thread(self, response, executor):
        if getattr(executor, "has_connections", True):
            return False
        if type(response).close is not HttpResponseBase.close:
            return False
        if not all(map(self.closes_only_the_body, response._resource_closers)):
            return False
        sync_receivers, async_receivers = signals.request_finished._live_receivers(
            response._handler_class
        )
        if async_receivers or not FINISHED_RECEIVERS.issuperset(sync_receivers):
            return False
        # close_old_connections would act on this thread's connections, close_caches on
        # the context's caches, reset_urlconf on its URLconf: each must have none.
        return not (
            connections.all(initialized_only=True)
            or caches.all(initialized_only=True)
            or get_urlconf() is not None
        )

    def closes_only_the_body(self, closer):
        """True for the request's own close() (Django adds it to every response), when the
        request has no uploaded files: it closes the body's in-memory or temporary file."""
        request = getattr(closer, "__self__", None)
        return getattr(closer, "__func__", None) is self.request_class.close and not hasattr(
            request, "_files"
        )

    async def handle(self, scope, receive, send, executor=None):
        """Django 5.2's ``ASGIHandler.handle()``, sending ``request_started`` through
        ``self.request_started()`` and closing the response through
        ``self.close_response()``. Nothing else differs (``HANDLE_MATCHES_DJANGO``)."""
        # Receive the HTTP request body as a stream object.
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        # Request is complete and can be served.
        set_script_prefix(get_script_prefix(scope))
        await self.request_started(scope, executor)
        # Get the request and check for basic issues.
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            await sync_to_async(error_response.close)()
            return

        async def process_request(request, send):
            response = await self.run_get_response(request)
            try:  # noqa: SIM105 (as Django's, line for line)
                await self.send_response(response, send)
            except asyncio.CancelledError:
                # Client disconnected during send_response (ignore exception).
                pass

            return response

        # Try to catch a disconnect while getting response.
        tasks = [
            # Check the status of these tasks and (optionally) terminate them
            # in this order. The listen_for_disconnect() task goes first
            # because it should not raise unexpected errors that would prevent
            # us from cancelling process_request().
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request(request, send)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        # Now wait on both tasks (they may have both finished by now).
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    # Ignore client disconnects.
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                # Allow views to handle cancellation.
                task.cancel()
                try:  # noqa: SIM105 (as Django's, line for line)
                    await task
                except asyncio.CancelledError:
                    # Task re-raised the CancelledError as expected.
                    pass

        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            await signals.request_finished.asend(sender=self.__class__)
        else:
            await self.close_response(response, executor)

        body_file.close()


def _body(function):
    """function's body without its docstring: (its statements' AST as text, the names it
    loads)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    body = tree.body[0].body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    names = {
        node.id
        for statement in body
        for node in ast.walk(statement)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }
    return "\n".join(ast.dump(statement) for statement in body), names


def handle_matches_django():
    """True when ``ASGIHandler.handle`` is the installed Django's with only
    ``CHANGED_CALLS`` changed: the same statements once those are made the same way, and
    each module-level name they use bound to the same object as in Django's module.
    False (keep Django's own) if either cannot be read."""
    try:
        ours, _ = _body(ASGIHandler.handle)
        djangos, names = _body(DjangoASGIHandler.handle)
    except (OSError, TypeError, SyntaxError):
        return False
    for theirs, mine in CHANGED_CALLS:
        djangos = djangos.replace(_expression(theirs), _expression(mine))
    their_names = DjangoASGIHandler.handle.__globals__
    here = ASGIHandler.handle.__globals__
    bound = all(here.get(name) is their_names[name] for name in names if name in their_names)
    return bound and ours == djangos


def _expression(source):
    return ast.dump(ast.parse(source).body[0].value)


# The calls in Django's handle() that ASGIHandler.handle() makes differently.
CHANGED_CALLS = [
    (
        "signals.request_started.asend(sender=self.__class__, scope=scope)",
        "self.request_started(scope, executor)",
    ),
    ("sync_to_async(response.close)()", "self.close_response(response, executor)"),
]


HANDLE_MATCHES_DJANGO = handle_matches_django()


def get_asgi_application(pool=None):
    """``django.core.asgi.get_asgi_application()``, with pooled request threads."""
    django.setup(set_prefix=False)
    return ASGIHandler(pool)
