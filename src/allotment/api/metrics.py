"""Prometheus metrics: decisions, latency, store errors, reservations in flight.

With several workers, ``allotment serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at
a fresh folder so every worker's counters add up in one scrape.
Reservations in flight are read from the store at scrape time, so they are
the same whichever worker answers.
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from allotment.api.auth import governor_of
from allotment.api.instruments import STORE_ERRORS

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest()
    try:
        held = governor_of(request).store.held_count()
        body += (
            b"# HELP allotment_reservations_in_flight Reservations held, not yet committed\n"
            b"# TYPE allotment_reservations_in_flight gauge\n"
            + f"allotment_reservations_in_flight {held}\n".encode()
        )
    except Exception:
        STORE_ERRORS.inc()
    return Response(body, media_type=CONTENT_TYPE_LATEST)
