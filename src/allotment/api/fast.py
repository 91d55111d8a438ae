"""authorize, commit and release on a lean path in front of FastAPI.

These three run once or twice per AI call, so their overhead is the
service's throughput. FastAPI's request machinery (its outer layers,
dependency resolution, body parsing, the generic encoder) costs several
times what the budget decision itself does. ``Service`` is the FastAPI app
with these three answered before any of that, by the same parts called
directly: the same pydantic body models (validated from the raw JSON by
pydantic-core), the same key check, the same handlers in
``allotment.api.calls``. Both paths run inside the same ``Edge``
(``allotment.api.middleware``), which gives every response its request id,
latency, body limit and error rendering. The FastAPI routes stay, for the
OpenAPI document and as the reference the API tests compare against.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel
from pydantic import ValidationError as ShapeError
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from allotment.access import Caller
from allotment.api.auth import caller_from
from allotment.api.calls import (
    AuthorizeBody,
    CommitBody,
    ReleaseBody,
    do_authorize,
    do_commit,
    do_release,
    router,
)
from allotment.api.middleware import Edge, respond
from allotment.governor import Governor

__all__ = ["Service"]

Handler = Callable[[Any, Caller, Governor], Awaitable[Response]]
#: the routes the lean path stands in for: they name its latency series
_ROUTES = {r.path: r for r in router.routes if isinstance(r, APIRoute)}
_CALLS: dict[str, tuple[type[BaseModel], Handler, BaseRoute]] = {
    path: (model, handler, _ROUTES[path])
    for path, model, handler in (
        ("/v1/authorize", AuthorizeBody, do_authorize),
        ("/v1/commit", CommitBody, do_commit),
        ("/v1/release", ReleaseBody, do_release),
    )
}
#: what FastAPI says of a request without a body; the lean path says the same
_NO_BODY = [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]


class Service(FastAPI):
    """The FastAPI app inside ``Edge``, with ``POST /v1/authorize|commit|release``
    answered first.

    ``governor`` None sends every request through FastAPI (the reference path).
    """

    governor: Governor | None = None

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._edge = Edge(self._dispatch)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # async def: uvicorn tells an ASGI 3 app from an ASGI 2 one by it
        await self._edge(scope, receive, send)

    def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, None]:
        """The lean path's coroutine or FastAPI's, handed on: no coroutine frame of its own."""
        if self.governor is not None and scope["type"] == "http" and scope["method"] == "POST":
            call = _CALLS.get(scope["path"])
            if call is not None:
                model, handler, route = call
                scope["route"] = route  # as FastAPI's router sets it: it names the latency series
                return _answer(self.governor, scope, receive, send, model, handler)
        return super().__call__(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        """FastAPI's stack without its outermost layer: ``ServerErrorMiddleware``
        would answer a failure nobody foresaw in plain text before ``Edge`` could."""
        stack = super().build_middleware_stack()
        assert isinstance(stack, ServerErrorMiddleware)
        return stack.app


async def _answer(
    governor: Governor,
    scope: Scope,
    receive: Receive,
    send: Send,
    model: type[BaseModel],
    handler: Handler,
) -> None:
    authorization = ""
    for key, value in scope["headers"]:
        if key == b"authorization":
            authorization = value.decode("latin-1")
            break
    caller = caller_from(authorization, governor)
    raw = await _body(receive)
    if not raw:
        raise RequestValidationError(_NO_BODY)
    try:
        body = model.model_validate_json(raw)
    except ShapeError as exc:
        raise RequestValidationError(exc.errors()) from None
    await respond(await handler(body, caller, governor), send)


async def _body(receive: Receive) -> bytes:
    """The request body (its size is ``Edge``'s to limit)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
