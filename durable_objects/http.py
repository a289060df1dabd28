"""HTTP requests and responses as plain data, for ``stub.fetch()``.

A request's path is text (percent-decoded, UTF-8, as ``request.path``), its query string
ASCII (what is not ASCII percent-encoded) and its header values latin-1 strings, as
Django's requests have them. ``decode_request`` turns them back into a WSGI environ,
whose strings carry bytes as latin-1 (PEP 3333), so any path works in the object.
"""

import inspect
from http.cookies import SimpleCookie
from io import BytesIO
from urllib.parse import quote

from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBase

# Every printable ASCII character but the space stays as it is in a query string.
_QUERY_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


def ascii_query(query, encoding="utf-8"):
    """The query string (str or bytes) with every byte beyond ASCII percent-encoded.

    Parsing it gives what parsing the original gives (``QueryDict`` decodes UTF-8), and it
    fits a WSGI environ whatever the client sent.
    """
    if isinstance(query, str):
        if query.isascii():
            return query
        query = query.encode(encoding, "surrogatepass")
    return quote(bytes(query), safe=_QUERY_SAFE)


def _wsgi_str(text):
    """text as a WSGI environ string: its UTF-8 bytes, one latin-1 character each."""
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


def encode_request(request):
    """Describe a Django HttpRequest, or a path string, as plain data."""
    if isinstance(request, str):
        path, _, query = request.partition("?")
        return {
            "method": "GET",
            "path": path or "/",
            "query": ascii_query(query),
            "headers": {},
            "body": b"",
        }
    if not isinstance(request, HttpRequest):
        raise TypeError(
            f"stub.fetch() takes a Django HttpRequest or a path, not {type(request).__name__}."
        )
    # Under WSGI the query string carries its bytes as latin-1; under ASGI it is UTF-8.
    encoding = "latin-1" if isinstance(request, WSGIRequest) else "utf-8"
    return {
        "method": request.method or "GET",
        "path": request.path,
        "query": ascii_query(request.META.get("QUERY_STRING", ""), encoding),
        "headers": dict(request.headers),
        "body": request.body,
    }


def decode_request(data):
    """Rebuild the request inside the object as a WSGIRequest (``request.user`` is not carried).

    A real WSGIRequest parses ``POST``, ``FILES`` and ``COOKIES`` lazily, as in a view.
    """
    body = data["body"]
    environ = {
        "REQUEST_METHOD": data["method"],
        "PATH_INFO": _wsgi_str(data["path"]),
        "SCRIPT_NAME": "",
        "QUERY_STRING": ascii_query(data["query"]),
        "SERVER_NAME": "durable-object",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": BytesIO(body),
        "wsgi.url_scheme": "http",
    }
    for name, value in data["headers"].items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_LENGTH":
            continue
        environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
    return WSGIRequest(environ)


async def encode_response(response):
    """Describe the HttpResponse an object's fetch() returned."""
    if not isinstance(response, HttpResponseBase):
        raise TypeError(
            f"fetch() must return a Django HttpResponse, not {type(response).__name__}."
        )
    if getattr(response, "streaming", False):
        parts = []
        content = response.streaming_content
        if inspect.isasyncgen(content) or hasattr(content, "__aiter__"):
            async for part in content:
                parts.append(part)
        else:
            parts.extend(content)
        body = b"".join(part if isinstance(part, bytes) else str(part).encode() for part in parts)
    else:
        body = response.content
    return {
        "status": response.status_code,
        "reason": response.reason_phrase,
        "headers": list(response.headers.items()),
        "cookies": [morsel.OutputString() for morsel in response.cookies.values()],
        "body": body,
    }


def decode_response(data):
    response = HttpResponse(data["body"], status=data["status"], reason=data["reason"])
    for name, value in data["headers"]:
        response.headers[name] = value
    for cookie in data["cookies"]:
        response.cookies.load(SimpleCookie(cookie))
    return response
