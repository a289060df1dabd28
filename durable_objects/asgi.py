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
"""

import inspect
import threading
from concurrent.futures import ThreadPoolExecutor

import asgiref
import django
from asgiref.sync import ThreadSensitiveContext
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler

if "executor" not in inspect.signature(ThreadSensitiveContext).parameters:
    raise ImproperlyConfigured(
        "durable_objects.asgi needs asgiref 3.13 or later, for "
        f"ThreadSensitiveContext(executor=...); this is asgiref {asgiref.__version__}. "
        "Upgrade it (pip install 'asgiref>=3.13'), or use Django's "
        "django.core.asgi.get_asgi_application()."
    )

__all__ = ["ASGIHandler", "ExecutorPool", "get_asgi_application"]

IDLE_THREADS = 32  # executors kept for later requests; more are made while busier


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
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)

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
                await self.handle(scope, receive, send)
        except BaseException:
            # Cancelled or failed: work it started may still be queued on the thread, so
            # no later request waits behind it.
            self.pool.discard(executor)
            raise
        # handle() awaited every thread-sensitive call it made, and its last ones
        # (response.close(), request_finished) queue behind any still running, so the
        # executor has nothing left to do.
        self.pool.give_back(executor)


def get_asgi_application(pool=None):
    """``django.core.asgi.get_asgi_application()``, with pooled request threads."""
    django.setup(set_prefix=False)
    return ASGIHandler(pool)
