"""HTTP requests and responses as plain data, for ``stub.fetch()``."""

import inspect
from http.cookies import SimpleCookie
from io import BytesIO

from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBase


def encode_request(request):
    """Describe a Django HttpRequest, or a path string, as plain data."""
    if isinstance(request, str):
        path, _, query = request.partition("?")
        return {"method": "GET", "path": path or "/", "query": query, "headers": {}, "body": b""}
    if not isinstance(request, HttpRequest):
        raise TypeError(
            f"stub.fetch() takes a Django HttpRequest or a path, not {type(request).__name__}."
        )
    return {
        "method": request.method or "GET",
        "path": request.path,
        "query": request.META.get("QUERY_STRING", ""),
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
        "PATH_INFO": data["path"],
        "SCRIPT_NAME": "",
        "QUERY_STRING": data["query"],
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
