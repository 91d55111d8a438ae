"""The HTTP service: one composition root, ``create_app(governor)``.

``build_app()`` is the uvicorn factory: it reads the settings from the
environment (``ALLOTMENT_DB``, ``ALLOTMENT_CONFIG``, ``ALLOTMENT_ADMIN_KEY``,
``ALLOTMENT_SWEEP_SECONDS``: how often each worker releases expired
reservations, default 1, 0 for never) so every worker process builds the same
app.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from allotment.api import admin, calls, errors, metrics, reads
from allotment.api.fast import Service, new_request_id
from allotment.api.instruments import STORE_ERRORS, latency
from allotment.config import db_url, load_pricing
from allotment.errors import AllotmentError
from allotment.governor import Governor

__all__ = ["bootstrap_admin_key", "build_app", "create_app"]


class RequestIdMiddleware:
    """Every response carries ``X-Request-Id``: the caller's, or a new one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"")
        request_id = incoming[:128] or new_request_id()
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            latency(scope["method"], path).observe(time.perf_counter() - started)


def create_app(
    governor: Governor, sweep_every: float | None = None, *, lean: bool = True
) -> FastAPI:
    """The v1 API over ``governor``; with ``sweep_every``, a background sweeper too.

    ``lean`` answers authorize, commit and release before FastAPI's request
    machinery (``allotment.api.fast``); without it, the FastAPI routes do.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = None if not sweep_every else asyncio.create_task(_sweeper(governor, sweep_every))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task

    app = Service(
        title="allotment",
        version="1",
        description="A budget in front of every AI call.",
        lifespan=lifespan,
    )
    app.state.governor = governor
    errors.install(app)
    for module in (calls, reads, admin):
        app.include_router(module.router)
    app.include_router(reads.health)
    app.include_router(metrics.router)
    if lean:
        app.governor = governor
    # Outermost: ids and latency for every route FastAPI answers (Service adds both itself
    # to the three it answers first).
    app.add_middleware(RequestIdMiddleware)
    return app


async def _sweeper(governor: Governor, every: float) -> None:
    """Release expired reservations even when no authorization comes to do it.

    Every worker of every instance runs one; the store makes that safe.
    """
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(governor.sweep)
        except AllotmentError:
            STORE_ERRORS.inc()  # the next round tries again


def build_app() -> FastAPI:
    """The app as configured by the environment (uvicorn's factory)."""
    config = os.environ.get("ALLOTMENT_CONFIG")
    if config:
        pricing = load_pricing(config)
        governor = Governor(db_url(), pricer=pricing.pricer, unknown_model=pricing.unknown_model)
        governor.load_budgets(config)
    else:
        governor = Governor(db_url())
    bootstrap_admin_key(governor)
    sweep_every = float(os.environ.get("ALLOTMENT_SWEEP_SECONDS", "1"))
    app = create_app(governor, sweep_every=sweep_every)
    # What start-up built (the price catalog, FastAPI's routes and models) lives
    # as long as the process: keep the cycle collector from scanning it again
    # and again under load (every full collection would walk all of it).
    gc.freeze()
    return app


def bootstrap_admin_key(governor: Governor) -> None:
    """With no keys at all, create an admin key (``$ALLOTMENT_ADMIN_KEY`` or a new one)."""
    if governor.list_keys():
        return
    given = os.environ.get("ALLOTMENT_ADMIN_KEY")
    secret = governor.create_first_key(given)
    if secret is not None and not given:
        print(f"allotment: created admin key (shown once): {secret}", file=sys.stderr)
