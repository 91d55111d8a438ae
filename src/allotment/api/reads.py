"""Reading over HTTP: status, usage, the ledger (JSON pages or CSV), prices, health."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from allotment.api.auth import CallerDep, GovernorDep, governor_of
from allotment.api.contract import CSV, documented
from allotment.api.schemas import EventPage, HealthOut, PricesOut, StatusOut, UsageOut
from allotment.core.ledger import Event, EventStatus
from allotment.core.units import usage_row_json
from allotment.core.usage import Usage
from allotment.errors import ValidationError
from allotment.store.base import EventQuery

__all__ = ["health", "router"]

router = APIRouter(prefix="/v1", tags=["reads"])
health = APIRouter(tags=["health"])
Dims = Annotated[list[str] | None, Query()]


@router.get("/status", response_model=None, responses=documented(StatusOut))
def status(
    caller: CallerDep,
    gov: GovernorDep,
    tenant: str | None = None,
    user: str | None = None,
    group: Dims = None,
    groups: Dims = None,
    key: str | None = None,
    agent: str | None = None,
    session: str | None = None,
    feature: str | None = None,
    device: str | None = None,
    install: str | None = None,
    tag: Annotated[
        list[str] | None, Query(description="NAME:VALUE, repeatable (e.g. byok:true)")
    ] = None,
    provider: str | None = None,
    model: str | None = None,
    view: str = Query("operator", pattern="^(operator|client)$"),
) -> dict[str, Any]:
    """Every budget that applies to the subject; ``view=client`` shows percentages only.

    The subject is given dimension by dimension (``group`` and ``groups`` are one
    list), tags as ``tag=NAME:VALUE``: a call on a user's own key
    (``tag=byok:true``) sees the budgets that count such calls.
    """
    caller.may_read(status=True)
    subject: dict[str, Any] = {
        "tenant": caller.tenant(tenant),
        "groups": [*(group or ()), *(groups or ())],
        "tags": _tags(tag or ()),
    }
    dims = {"user": user, "key": key, "agent": agent, "session": session, "feature": feature,
            "device": device, "install": install}  # fmt: skip
    subject |= {k: v for k, v in dims.items() if v is not None}
    views = gov.status(subject, provider, model)
    client, money = view == "client", gov.currency
    return {"budgets": [v.to_dict(client=client, currency=money) for v in views]}


@router.get("/usage", response_model=None, responses=documented(UsageOut))
def usage(
    caller: CallerDep,
    gov: GovernorDep,
    tenant: str | None = None,
    by: Dims = None,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
    order: Annotated[
        str | None, Query(description="biggest first: cost, tokens, calls, errors, blocked, ...")
    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
) -> dict[str, Any]:
    """Usage totals grouped by dimensions (user, key, agent, feature, model, day, ...).

    ``order=cost&limit=20`` gives the top 20 groups by cost. ``cost_micros`` is
    in micro-units of ``currency``, the ledger's currency; ``display`` has the
    totals in human units.
    """
    caller.may_read()
    rows = gov.usage(
        caller.tenant(tenant), by or [], _aware(since), _aware(until), order=order, limit=limit
    )
    return {"rows": [usage_row_json(r, gov.currency) for r in rows]}


@router.get("/events", response_model=None, responses=documented(EventPage, 200, CSV))
def events(
    caller: CallerDep,
    gov: GovernorDep,
    tenant: str | None = None,
    status: str | None = None,
    price_source: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=10_000),
    format: str = Query("json", pattern="^(json|csv)$"),
) -> Any:
    """The ledger, oldest first, cursor-paginated by event id; ``format=csv`` exports it."""
    caller.may_read()
    query = EventQuery(
        tenant=caller.within(tenant),
        status=None if status is None else _event_status(status),
        price_source=price_source,
        since=_aware(since),
        until=_aware(until),
        after_id=cursor,
        limit=limit,
    )
    page = gov.events(query)
    if format == "csv":
        return StreamingResponse(_csv(page), media_type="text/csv")
    next_cursor = page[-1].id if len(page) == limit else None
    return {"events": [e.to_dict(display=True) for e in page], "next_cursor": next_cursor}


@router.get("/prices", response_model=None, responses=documented(PricesOut))
def prices(caller: CallerDep, gov: GovernorDep, provider: str, model: str) -> dict[str, Any]:
    """What a model costs per million input and output tokens, and where the price comes from."""
    caller.may_read(status=True)
    if gov.pricer is None:
        return {"provider": provider, "model": model, "source": "none"}
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, requests=0)
    price = gov.pricer.price(provider, model, usage, gov.now(), caller.within())
    return {"provider": provider, "model": model, **({} if price is None else price.to_dict())}


@health.get("/healthz", response_model=None, responses={200: {"model": HealthOut}})
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@health.get(
    "/readyz",
    response_model=None,
    responses={200: {"model": HealthOut}, 503: {"model": HealthOut}},
)
def readyz(request: Request) -> Any:
    """Readiness: the store answers a query."""
    try:
        governor_of(request).list_budgets("__readyz__")
    except Exception:
        return JSONResponse({"status": "store_unavailable"}, 503)
    return {"status": "ok"}


def _tags(pairs: Iterable[str]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        name, colon, value = pair.partition(":")
        if not colon:
            raise ValidationError("tag", f"must be NAME:VALUE, got {pair[:60]!r}")
        tags[name] = value
    return tags


def _event_status(value: str) -> EventStatus:
    try:
        return EventStatus(value)
    except ValueError:
        choices = ", ".join(s.value for s in EventStatus)
        raise ValidationError("status", f"unknown status {value!r} (one of {choices})") from None


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


_CSV_COLUMNS = ("id", "request_id", "status", "occurred_at", "tenant", "user", "feature",
                "provider", "model", "input_tokens", "output_tokens", "cost_micros", "currency",
                "price_source", "reason", "budget_id")  # fmt: skip


def _csv(page: list[Event]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(_CSV_COLUMNS)
    for e in page:
        writer.writerow([
            e.id, e.request_id, e.status.value, e.occurred_at.isoformat(), e.subject.tenant,
            e.subject.user or "", e.subject.feature or "", e.provider, e.model,
            e.usage.input_tokens, e.usage.output_tokens, e.usage.cost_micros or 0, e.currency,
            e.price.get("source", ""), e.reason or "", e.budget_id or "",
        ])  # fmt: skip
    yield buffer.getvalue()
