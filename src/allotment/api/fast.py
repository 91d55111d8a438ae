"""authorize, commit and release on a lean path past FastAPI's per-request machinery.

These three run once or twice per AI call, so their overhead is the
service's throughput. FastAPI (dependency resolution, body parsing, the
generic encoder) costs several times what the budget decision itself does.
This middleware answers them with the same parts, called directly: the same
pydantic body models (validated from the raw JSON by pydantic-core), the same
key check, the same handlers in ``allotment.api.calls`` and the same error
responses. The FastAPI routes stay, for the OpenAPI document and as the
reference the API tests compare against.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as ShapeError
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

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
from allotment.governor import Governor

__all__ = ["MAX_BODY", "FastCalls"]

Handler = Callable[[Any, Caller, Governor], Awaitable[Response]]
#: larger bodies get 413 (a whole provider request, for estimating, is allowed)
MAX_BODY = 16 * 1024 * 1024
_CALLS: dict[str, tuple[type[BaseModel], Handler]] = {
    "/v1/authorize": (AuthorizeBody, do_authorize),
    "/v1/commit": (CommitBody, do_commit),
    "/v1/release": (ReleaseBody, do_release),
}


_ROUTES = {path: SimpleNamespace(path=path) for path in _CALLS}


class _TooLarge(Exception):
    pass


class FastCalls:
    """Answers ``POST /v1/authorize|commit|release``; passes everything else on."""

    def __init__(self, app: ASGIApp, governor: Governor) -> None:
        self.app = app
        self.governor = governor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = _CALLS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if call is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = _ROUTES[scope["path"]]  # names the latency metric's route
        response = await self._answer(scope, receive, *call)
        await response(scope, receive, send)

    async def _answer(
        self, scope: Scope, receive: Receive, model: type[BaseModel], handler: Handler
    ) -> Response:
        try:
            caller = caller_from(_header(scope, b"authorization"), self.governor)
            body = model.model_validate_json(await _body(receive))
            return await handler(body, caller, self.governor)
        except ShapeError as exc:
            return invalid_shape(exc.errors())
        except _TooLarge:
            return error(413, "payload_too_large", f"the body exceeds {MAX_BODY} bytes")
        except Exception as exc:
            response = error_response(exc)
            if response is None:
                raise
            return response


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


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
