"""HTTP requests and responses as plain data, for ``stub.fetch()``."""

import inspect
from http.cookies import SimpleCookie
from io import BytesIO

from django.http import HttpRequest, HttpResponse, HttpResponseBase, QueryDict
from django.http.cookie import parse_cookie


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
    """Rebuild an HttpRequest inside the object (``request.user`` is not carried)."""
    request = HttpRequest()
    request.method = data["method"]
    request.path = request.path_info = data["path"]
    meta = {
        "REQUEST_METHOD": data["method"],
        "PATH_INFO": data["path"],
        "QUERY_STRING": data["query"],
        "SERVER_NAME": "durable-object",
        "SERVER_PORT": "80",
    }
    for name, value in data["headers"].items():
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            meta[key] = value
        else:
            meta[f"HTTP_{key}"] = value
    request.META = meta
    request.GET = QueryDict(data["query"])
    request.COOKIES = parse_cookie(meta.get("HTTP_COOKIE", ""))
    request._body = data["body"]
    request._stream = BytesIO(data["body"])
    request._read_started = False
    if "CONTENT_TYPE" in meta:
        request.content_type = meta["CONTENT_TYPE"].split(";")[0].strip()
    return request


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
