"""The HTTP service: ``create_app(governor)``, and ``build_app()``, uvicorn's factory.

``build_app`` builds the Governor from the environment through the one
composition root (``allotment.settings``), so every worker process builds the
same app and the service prices and decides as the CLI does.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio.to_thread
from fastapi import FastAPI

from allotment.api import admin, calls, docs, errors, metrics, plans, pools, reads
from allotment.api.fast import Service
from allotment.api.instruments import STORE_ERRORS
from allotment.errors import AllotmentError, ConfigurationError
from allotment.governor import Governor
from allotment.settings import READ_THREADS, Settings, build_governor

__all__ = ["bootstrap_admin_key", "build_app", "create_app"]


def create_app(
    governor: Governor,
    sweep_every: float | None = None,
    *,
    lean: bool = True,
    read_threads: int = READ_THREADS,
) -> FastAPI:
    """The v1 API over ``governor``; with ``sweep_every``, a background sweeper too.

    ``lean`` answers authorize, commit and release before FastAPI's request
    machinery (``allotment.api.fast``); without it, the FastAPI routes do.
    ``read_threads`` bounds the threads the reading routes run on.
    """
    if isinstance(read_threads, bool) or not isinstance(read_threads, int) or read_threads < 1:
        raise ConfigurationError(f"read_threads must be a positive integer, got {read_threads!r}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _bound_threads(read_threads)
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
        # A body is JSON whatever its Content-Type says, or without one (see
        # allotment.api.middleware): there are no cookies to forge requests with.
        strict_content_type=False,
        # FastAPI's pages load their scripts from a CDN: allotment.api.docs serves its own
        docs_url=None,
        redoc_url=None,
    )
    app.state.governor = governor
    errors.install(app)
    for module in (calls, reads, admin, pools, plans):
        app.include_router(module.router)
    app.include_router(reads.health)
    app.include_router(metrics.router)
    docs.install(app)
    if lean:
        app.governor = governor
    return app


def _bound_threads(limit: int) -> None:
    """Run the sync routes (every read) on at most ``limit`` threads of this loop.

    FastAPI runs them on anyio's default thread pool, 40 threads unless told
    otherwise, and each thread keeps its own SQLite connection and page cache:
    an idle worker's memory grew with every burst of reads.
    """
    anyio.to_thread.current_default_thread_limiter().total_tokens = limit


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
    """The app as configured by the environment (uvicorn's factory; see ``allotment.settings``)."""
    settings = Settings.from_env()  # a bad setting fails before the store is opened
    governor = build_governor(settings, load_budgets=True)
    bootstrap_admin_key(governor)
    app = create_app(
        governor, sweep_every=settings.sweep_seconds, read_threads=settings.read_threads
    )
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
