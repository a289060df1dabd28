"""An HTTP request straight from the ASGI router to an object's ``fetch()``.

``routing.http_path()`` puts one of these in a Channels ``URLRouter`` under ``"http"``.
It skips Django's URL resolution, middleware and request object: it reads the scope,
asks ``authenticate(scope)``, reads the body (at most MAX_CALL_SIZE bytes), and sends
the request to the object as plain data (``http.encode_request``'s shape). What the
object's ``fetch()`` returns goes back as it is. Every refusal is a short text/plain
4xx that names the problem; nothing reaches the object before it passes.
See docs/ref/api.md ("http_path").
"""

import inspect
import logging

from django.http import HttpResponseBase

from durable_objects import serialization
from durable_objects.conf import get_config
from durable_objects.events.calls import MAX_HEADERS, Fetch
from durable_objects.exceptions import DurableObjectError
from durable_objects.http import ascii_query
from durable_objects.ids import DurableObjectId
from durable_objects.runtime.calls import call

logger = logging.getLogger("durable_objects.http")


class Refused(Exception):
    """The request is refused with status and a text that says why."""

    def __init__(self, status, text):
        super().__init__(text)
        self.status = status
        self.text = text


class DirectFetch(Fetch):
    """A Fetch whose caller takes the response as plain data, not as an HttpResponse.

    The route sends it on as ASGI messages at once; building a Django response only to
    take it apart again was a tenth of the route's time. On the wire it is a Fetch.
    """

    __slots__ = ()

    def decode(self, value):
        return serialization.loads(value)


class ObjectHttpRoute:
    """The ASGI application of one ``http_path()``: a request becomes one ``fetch()``.

    The object comes from the URL kwarg ``name_kwarg`` (its name), ``id_kwarg`` (its
    64-hex ID), or ``object_id(scope)`` (a DurableObjectId, a name, or None for 404).
    ``valid_name(name)`` may refuse a name (404); ``authenticate(scope)``, sync or
    async, may refuse the request: a false result is a 403, an HttpResponse is sent as
    it is.
    """

    def __init__(
        self,
        object_class,
        *,
        name_kwarg=None,
        id_kwarg=None,
        object_id=None,
        valid_name=None,
        authenticate=None,
    ):
        self.object_class = object_class
        self.name_kwarg = name_kwarg
        self.id_kwarg = id_kwarg
        self.object_id = object_id
        self.valid_name = valid_name
        self.authenticate = authenticate
        self._cls = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"http_path() serves HTTP, not {scope['type']!r} connections.")
        try:
            cls, oid = self._resolve(scope)
            if self.authenticate is not None:
                allowed = self.authenticate(scope)
                if inspect.isawaitable(allowed):
                    allowed = await allowed
                if isinstance(allowed, HttpResponseBase):
                    await send_response(send, allowed)
                    return
                if not allowed:
                    raise Refused(403, "Forbidden.")
            body = await read_body(scope, receive)
            if body is None:
                return  # the client went away
            request = request_data(scope, body)
        except Refused as refusal:
            logger.info("Refused %s %r: %s", scope.get("method"), scope.get("path"), refusal)
            await send_text(send, refusal.status, refusal.text)
            return
        try:
            response = await call(cls, oid, DirectFetch(request, name=oid.name))
        except Exception as exc:
            if isinstance(exc, DurableObjectError) and exc.retryable:
                logger.warning("fetch() of %s could not run: %s", oid, exc)
                await send_text(send, 503, "The object is unavailable; retry.", retry=True)
                return
            if not (isinstance(exc, DurableObjectError) or getattr(exc, "remote", False)):
                raise
            # The object's error (its type and message) stays in the log, not the response.
            logger.warning("fetch() of %s failed: %s: %s", oid, type(exc).__name__, exc)
            await send_text(send, 500, "Internal error.")
            return
        await send_data(send, response)

    # -- the object ----------------------------------------------------------------------

    def _class(self):
        if self._cls is None:
            cls = self.object_class
            if isinstance(cls, str):
                from durable_objects.registry import registry

                cls = registry.get(cls)
            self._cls = cls
        return self._cls

    def _resolve(self, scope):
        cls = self._class()
        kwargs = scope.get("url_route", {}).get("kwargs", {})
        if self.id_kwarg is not None:
            try:
                return cls, cls.objects.id_from_string(str(kwargs[self.id_kwarg]))
            except KeyError:
                raise Refused(404, f"The route has no URL kwarg {self.id_kwarg!r}.") from None
            except ValueError as exc:
                raise Refused(400, f"Malformed object ID: {exc}") from None
        if self.name_kwarg is not None:
            if self.name_kwarg not in kwargs:
                raise Refused(404, f"The route has no URL kwarg {self.name_kwarg!r}.")
            return cls, self._from_name(cls, str(kwargs[self.name_kwarg]))
        found = self.object_id(scope)
        if found is None:
            raise Refused(404, "No such object.")
        if isinstance(found, DurableObjectId):
            if found.label != cls._meta.label:
                raise Refused(400, f"object_id(scope) returned an ID of {found.label}.")
            return cls, found
        if isinstance(found, str):
            return cls, self._from_name(cls, found)
        raise TypeError(f"object_id(scope) must return a DurableObjectId or a name: {found!r}")

    def _from_name(self, cls, name):
        if not name:
            raise Refused(404, "The object's name is empty.")
        if self.valid_name is not None and not self.valid_name(name):
            raise Refused(404, "No such object.")
        return cls.objects.id_from_name(name)


# -- the request -------------------------------------------------------------------------


async def read_body(scope, receive):
    """The request's body, at most MAX_CALL_SIZE bytes (else a 413); None on a disconnect."""
    limit = get_config()["MAX_CALL_SIZE"]
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise Refused(400, "Malformed Content-Length.") from None
            if declared > limit:
                raise Refused(413, f"The body is {declared} bytes; the limit is {limit}.")
    parts = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"The body is over {limit} bytes (MAX_CALL_SIZE).")
            parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def request_data(scope, body):
    """The request as ``http.decode_request`` takes it; headers joined as Django joins them."""
    headers = {}
    raw = scope.get("headers", ())
    if len(raw) > MAX_HEADERS:
        raise Refused(431, f"More than {MAX_HEADERS} headers.")
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key in headers:
            text = f"{headers[key]}{'; ' if key == 'cookie' else ','}{text}"
        headers[key] = text
    return {
        "method": scope.get("method", "GET"),
        "path": scope.get("path") or "/",
        "query": ascii_query(scope.get("query_string", b"")),
        "headers": headers,
        "body": body,
    }


# -- the response ------------------------------------------------------------------------


async def send_response(send, response):
    """Send a (non-streaming) Django HttpResponse; headers and cookies as Django sends them."""
    body = response.content
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()
    ]
    if not response.has_header("Content-Length"):
        headers.append((b"content-length", str(len(body)).encode()))
    headers += [
        (b"set-cookie", morsel.output(header="").strip().encode("latin-1"))
        for morsel in response.cookies.values()
    ]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_data(send, data):
    """Send a response as ``http.encode_response`` describes it."""
    body = data["body"]
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in data["headers"]
    ]
    if not any(name.lower() == b"content-length" for name, _ in headers):
        headers.append((b"content-length", str(len(body)).encode()))
    headers += [(b"set-cookie", cookie.encode("latin-1")) for cookie in data["cookies"]]
    await send({"type": "http.response.start", "status": data["status"], "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_text(send, status, text, *, retry=False):
    body = text.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    if retry:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
