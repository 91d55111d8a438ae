"""authorize, commit and release on a lean path in front of FastAPI.

These three run once or twice per AI call, so their overhead is the
service's throughput. FastAPI's request machinery (its outer layers,
dependency resolution, body parsing, the generic encoder) costs several
times what the budget decision itself does. ``Service`` is the FastAPI app
with these three answered before any of that, by the same parts called
directly: the same pydantic body models (validated from the raw JSON by
pydantic-core), the same key check, the same handlers in
``allotment.api.calls`` and the same error responses, plus what the
middleware adds to every response (``X-Request-Id``, the latency metric).
The FastAPI routes stay, for the OpenAPI document and as the reference the
API tests compare against.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from itertools import count
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic import ValidationError as ShapeError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from allotment.api.auth import Caller, caller_from
from allotment.api.calls import (
    AuthorizeBody,
    CommitBody,
    ReleaseBody,
    do_authorize,
    do_commit,
    do_release,
)
from allotment.api.errors import error, error_response, invalid_shape
from allotment.api.instruments import latency
from allotment.governor import Governor

__all__ = ["MAX_BODY", "Service", "new_request_id"]

Handler = Callable[[Any, Caller, Governor], Awaitable[Response]]
#: larger bodies get 413 (a whole provider request, for estimating, is allowed)
MAX_BODY = 16 * 1024 * 1024
_CALLS: dict[str, tuple[type[BaseModel], Handler]] = {
    "/v1/authorize": (AuthorizeBody, do_authorize),
    "/v1/commit": (CommitBody, do_commit),
    "/v1/release": (ReleaseBody, do_release),
}
_log = logging.getLogger("allotment.api")

# Request ids: unique per process by a random prefix, then a counter (a uuid4
# per request costs more than the rest of the id handling together).
_PREFIX = os.urandom(8).hex()
_SEQUENCE = count(1)


def new_request_id() -> bytes:
    """A request id no other process or request of this one has used."""
    return f"{_PREFIX}{next(_SEQUENCE):016x}".encode()


class Service(FastAPI):
    """The FastAPI app, with ``POST /v1/authorize|commit|release`` answered first.

    ``governor`` None sends every request through FastAPI (the reference path).
    """

    governor: Governor | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.governor is not None and scope["type"] == "http" and scope["method"] == "POST":
            call = _CALLS.get(scope["path"])
            if call is not None:
                await _answer(self.governor, scope, receive, send, *call)
                return
        await super().__call__(scope, receive, send)


async def _answer(
    governor: Governor,
    scope: Scope,
    receive: Receive,
    send: Send,
    model: type[BaseModel],
    handler: Handler,
) -> None:
    started = time.perf_counter()
    authorization, request_id = "", b""
    for key, value in scope["headers"]:
        if key == b"authorization":
            authorization = value.decode("latin-1")
        elif key == b"x-request-id":
            request_id = value[:128]
    try:
        caller = caller_from(authorization, governor)
        body = model.model_validate_json(await _body(receive))
        response = await handler(body, caller, governor)
    except ShapeError as exc:
        response = invalid_shape(exc.errors())
    except _TooLarge:
        response = error(413, "payload_too_large", f"the body exceeds {MAX_BODY} bytes")
    except Exception as exc:
        answer = error_response(exc)
        if answer is None:
            _log.exception("%s %s failed", scope["method"], scope["path"])
            answer = error(500, "internal_error", "the service failed to answer this request")
        response = answer
    headers = response.raw_headers
    headers.append((b"x-request-id", request_id or new_request_id()))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
    latency("POST", scope["path"]).observe(time.perf_counter() - started)


class _TooLarge(Exception):
    pass


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
