"""What every request goes through, whichever path answers it: one pure-ASGI layer.

``Edge`` wraps the whole service. The FastAPI routes and the lean path for
authorize, commit and release (``allotment.api.fast``) both run inside it, so
they share by construction:

- ``X-Request-Id`` on every response: the caller's (its first 128 bytes) or a
  new one;
- the latency histogram, by method and route;
- the body limit: more than ``MAX_BODY`` bytes is a 413 ``payload_too_large``,
  refused from ``Content-Length`` before a byte is read, or, for a body sent
  without one (chunked), as soon as it passes the limit;
- one content-type rule: a body is JSON whatever ``Content-Type`` says (the
  lean path never looks; for the FastAPI routes another type is rewritten);
- errors: what a route raises is answered as ``allotment.api.errors`` maps
  it, and a failure nobody foresaw is logged and answered with a JSON 500
  ``internal_error`` (Starlette's plain-text one is taken out of the stack).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable
from itertools import count

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from allotment.api.errors import PayloadTooLarge, error_response, internal_error
from allotment.api.instruments import latency

__all__ = ["MAX_BODY", "Edge", "new_request_id", "respond"]

#: larger bodies get 413 (a whole provider request, for estimating, is allowed)
MAX_BODY = 16 * 1024 * 1024
#: methods with a latency series of their own; the rest share "OTHER", so no
#: client can make up label values
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_JSON = (b"content-type", b"application/json")
_log = logging.getLogger("allotment.api")

# Request ids: unique per process by a random prefix, then a counter (a uuid4
# per request costs more than the rest of the id handling together).
_PREFIX = os.urandom(8).hex()
_SEQUENCE = count(1)


def new_request_id() -> bytes:
    """A request id no other process or request of this one has used."""
    return f"{_PREFIX}{next(_SEQUENCE):016x}".encode()


class Edge:
    """The outermost layer of the service (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id, length = _read_headers(scope)
        responded = False

        def send_with_id(message: Message) -> Awaitable[None]:  # no coroutine of its own
            nonlocal responded
            if message["type"] == "http.response.start":
                responded = True
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            return send(message)

        try:
            if length > MAX_BODY:
                raise PayloadTooLarge(MAX_BODY)
            # A declared length is the server's to keep (h11 and httptools read that
            # many bytes, and refuse it beside Transfer-Encoding): only a body without
            # one is counted here.
            await self.app(scope, receive if length >= 0 else _limited(receive), send_with_id)
        except Exception as exc:
            if responded:  # too late for an error response: the server drops the connection
                raise
            await respond(_render(exc, scope), send_with_id)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            route = getattr(scope.get("route"), "path", "unmatched")
            latency(method, route).observe(time.perf_counter() - started)


async def respond(response: Response, send: Send) -> None:
    """Send a ready response (no background task, no streaming)."""
    headers = response.raw_headers
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


def _render(exc: Exception, scope: Scope) -> Response:
    """The error response for ``exc``; one nobody foresaw is logged first."""
    response = error_response(exc)
    if response is None:
        _log.error("%s %s failed", scope["method"], scope["path"], exc_info=exc)
        response = internal_error()
    return response


def _read_headers(scope: Scope) -> tuple[bytes, int]:
    """The request id to answer with and the declared body length (-1: none, or
    unreadable: the body is counted as it comes); a ``Content-Type`` other than
    JSON is rewritten to JSON."""
    request_id, length, other_type = b"", -1, False
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            request_id = value[:128]
        elif key == b"content-length":  # past 19 digits int() could refuse it: counted instead
            length = int(value) if value.isdigit() and len(value) < 20 else -1
        elif key == b"content-type" and value != b"application/json":
            other_type = not _is_json(value)
    if other_type:
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
        scope["headers"] = [*headers, _JSON]
    return request_id or new_request_id(), length


def _is_json(content_type: bytes) -> bool:
    """FastAPI's rule for a body it parses as JSON: ``application/json`` or ``…+json``."""
    kind = content_type.partition(b";")[0].strip().lower()
    return kind == b"application/json" or (
        kind.startswith(b"application/") and kind.endswith(b"+json")
    )


def _limited(receive: Receive) -> Receive:
    """``receive`` that raises ``PayloadTooLarge`` once the body passes ``MAX_BODY``."""
    left = MAX_BODY

    async def receive_limited() -> Message:
        nonlocal left
        message = await receive()
        left -= len(message.get("body", b""))
        if left < 0:
            raise PayloadTooLarge(MAX_BODY)
        return message

    return receive_limited
