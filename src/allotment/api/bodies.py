"""The FastAPI routes read a JSON body as the lean path does: with pydantic-core.

The lean path (``allotment.api.fast``) validates the raw bytes with
pydantic-core's JSON parser. FastAPI would parse them with the standard
library, which takes what pydantic-core refuses (lone surrogates, which then
fail deep inside the tokenizer) and fails on invalid UTF-8 with its own 400.
``JsonRoute`` makes both paths take and refuse the same bytes alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import pydantic_core
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["JsonRoute"]


class _JsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = pydantic_core.from_json(body)
            except ValueError as exc:  # FastAPI answers this one with a 422 naming the body
                raise json.JSONDecodeError(str(exc), "", 0) from None
        return self._json


class JsonRoute(APIRoute):
    """An ``APIRoute`` whose request parses JSON with pydantic-core (FastAPI's
    documented way to customise how a route reads its request)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handle(_JsonRequest(request.scope, request.receive))

        return route
