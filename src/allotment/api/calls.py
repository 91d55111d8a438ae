"""The call lifecycle over HTTP: authorize, commit, release, batch events.

authorize, commit and release are ``async def``. With a store that groups
calls into shared transactions (SQLite, PostgreSQL) authorize and commit are
awaited: one worker has many calls in flight, queued without a thread each,
and the store runs what is queued as one transaction while the event loop
goes on reading requests. On the memory store they run at once, on the loop.
Release runs in the thread pool on a store that waits on the network
(``store.blocking``), else on the loop. A provider ``request`` given instead
of an estimate is tokenized in a thread: a long prompt takes up to a few tenths
of a second of pure Python, which would stall every other request of the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any, ParamSpec, TypeVar

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.concurrency import run_in_threadpool

from allotment.access import Caller
from allotment.api import ratelimit
from allotment.api.auth import CallerDep, GovernorDep
from allotment.api.bodies import JsonRoute
from allotment.api.contract import BUDGET_HEADERS, REFUSED, documented
from allotment.api.errors import ApiError, refusal_response
from allotment.api.inputs import EstimateObject, SubjectObject, UsageObject
from allotment.api.instruments import (
    LATE_COMMITS,
    LATE_OVERSHOOT,
    STORE_ERRORS,
    decisions,
    shadow_refusals,
)
from allotment.api.responses import Json
from allotment.api.schemas import CommitOut, CommitsOut, DecisionOut, HeartbeatOut, ReleaseOut
from allotment.core.decisions import Decision
from allotment.core.ledger import CommitResult
from allotment.core.units import UNITS
from allotment.core.usage import Usage
from allotment.errors import ValidationError
from allotment.governor import Governor
from allotment.pricing.estimate import estimate_request
from allotment.providers import usage_from

__all__ = ["router"]

T = TypeVar("T")
P = ParamSpec("P")
router = APIRouter(prefix="/v1", tags=["calls"], route_class=JsonRoute)
#: the Governor's argument names that differ from the fields on the wire
_WIRE_NAMES = {"ttl": "ttl_seconds", "max_duration": "max_duration_seconds"}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RouteIn(_Body):
    """A route candidate."""

    provider: str
    model: str
    backend: str | None = Field(None, description="Matched by budgets as match: {backend}")


class AuthorizeBody(_Body):
    """Ask before a call: may this subject spend about this much on this model?"""

    request_id: str
    subject: SubjectObject
    provider: str
    model: str
    estimate: EstimateObject | None = None
    request: dict[str, Any] | None = Field(
        None, description="The provider request itself; estimated offline when no estimate."
    )
    ttl_seconds: StrictInt | None = Field(None, description="1 to 604800 (a week).")
    max_duration_seconds: StrictInt | None = Field(
        None,
        description="A lease's maximum duration: heartbeats never keep it past this (1 to 604800).",
    )
    routes: list[RouteIn] | None = Field(
        None,
        description="Where the call may be served, in order, the first being provider and "
        "model themselves: the first whose budgets all pass is reserved",
    )


class CommitBody(_Body):
    """Tell after a call what it really used (also post-hoc with subject/provider/model)."""

    request_id: str
    usage: UsageObject
    usage_from: str | None = Field(
        None,
        description="The provider whose usage object ``usage`` is, sent as the provider "
        "returned it (openai, anthropic, ...): read with allotment.usage_from",
    )
    status: str = "success"
    reason: str | None = None
    provider: str | None = None
    model: str | None = None
    subject: SubjectObject | None = None
    tenant: str | None = Field(
        None,
        description="Whose request id: for an admin key when several tenants use it "
        "(a tenant's key always acts on its own tenant).",
    )


class ReleaseBody(_Body):
    """Give a reservation back without using it."""

    request_id: str
    reason: str = "released"
    tenant: str | None = Field(
        None,
        description="Whose request id: for an admin key when several tenants use it "
        "(a tenant's key always acts on its own tenant).",
    )


class HeartbeatBody(_Body):
    """Keep a lease alive."""

    ttl_seconds: StrictInt | None = Field(
        None, description="Extend it by this much (default: the lease's own TTL)."
    )
    tenant: str | None = Field(
        None, description="Whose lease id: for an admin key when several tenants use it."
    )


class EventBody(_Body):
    """One call that already happened."""

    request_id: str
    subject: SubjectObject
    provider: str
    model: str
    usage: UsageObject
    usage_from: str | None = Field(
        None,
        description="The provider whose usage object ``usage`` is, sent as the provider "
        "returned it (openai, anthropic, ...): read with allotment.usage_from",
    )
    status: str = "success"
    occurred_at: datetime | None = None
    reason: str | None = None


class EventsBody(_Body):
    """A batch of calls that already happened: all are recorded or none."""

    events: list[EventBody] = Field(max_length=1000)


@router.post(
    "/authorize",
    response_model=None,
    responses=documented(DecisionOut, 200, BUDGET_HEADERS, REFUSED),
)
async def authorize(body: AuthorizeBody, caller: CallerDep, gov: GovernorDep) -> Response:
    """Reserve the estimate on every applicable budget, or refuse with 402."""
    return await do_authorize(body, caller, gov)


@router.post("/commit", response_model=None, responses=documented(CommitOut))
async def commit(body: CommitBody, caller: CallerDep, gov: GovernorDep) -> Response:
    """Replace the reservation with the actual usage; idempotent per request id."""
    return await do_commit(body, caller, gov)


@router.post("/release", response_model=None, responses=documented(ReleaseOut))
async def release(body: ReleaseBody, caller: CallerDep, gov: GovernorDep) -> Response:
    """Release a reservation; releasing twice, or after commit, changes nothing."""
    return await do_release(body, caller, gov)


@router.post(
    "/leases/{lease_id}/heartbeat", response_model=None, responses=documented(HeartbeatOut)
)
async def heartbeat(
    lease_id: str, caller: CallerDep, gov: GovernorDep, body: HeartbeatBody | None = None
) -> Response:
    """Extend a lease to min(now + ttl, its maximum duration); an expired one is
    reclaimed, never revived. ``stop: true``: the lease has ended, stop its work."""
    caller.may_write_usage()
    ttl, tenant = (None, None) if body is None else (body.ttl_seconds, body.tenant)
    beat = partial(gov.heartbeat, lease_id, ttl=ttl, tenant=caller.within(tenant))
    try:
        answer = await run_in_threadpool(beat) if _blocking(gov) else beat()
    except ValidationError as exc:
        raise _on_the_wire(exc) from None
    return Json(answer.to_dict(currency=gov.currency))


# The work of the three routes above, shared with the lean path in allotment.api.fast.
async def do_authorize(body: AuthorizeBody, caller: Caller, gov: Governor) -> Response:
    caller.may_write_usage()
    caller.tenant(_tenant_of(body.subject))
    estimate: dict[str, Any] | Usage | None = body.estimate
    if estimate is None and body.request is not None:  # as the Governor would, off the loop
        estimate = await asyncio.to_thread(
            estimate_request, body.request, provider=body.provider, model=body.model,
            settings=gov.estimates,
        )  # fmt: skip
    call = gov.authorize_async if _batching(gov) else _now(gov.authorize)
    try:
        decision = await call(
            body.request_id, body.subject, body.provider, body.model, estimate,
            ttl=body.ttl_seconds, max_duration=body.max_duration_seconds,
            routes=None if body.routes is None else [
                r.model_dump(exclude_none=True) for r in body.routes
            ],
        )  # fmt: skip
    except ValidationError as exc:
        raise _on_the_wire(exc) from None
    for shadow in decision.shadow_refusals:
        shadow_refusals(shadow.budget_id or "", shadow.reason.value).inc()
    if not decision.allowed:
        decisions("refused", decision.refusals[0].reason.value).inc()
        return refusal_response(decision, gov.currency, gov.now())
    decisions("allowed", "store_unavailable" if decision.degraded else "").inc()
    if decision.degraded:
        STORE_ERRORS.inc()
    # No ``display``: it takes half as long again to write (9.5 -> 14 µs with two budgets).
    answer = decision.to_dict(currency=gov.currency, display=False)
    headers = _budget_headers(decision, gov.currency) | ratelimit.headers(decision, gov.now())
    return Json(answer, headers=headers)


async def do_commit(body: CommitBody, caller: Caller, gov: Governor) -> Response:
    caller.may_write_usage()
    if body.subject is not None:
        caller.tenant(_tenant_of(body.subject))
    call = gov.commit_async if _batching(gov) else _now(gov.commit)
    usage = _usage(body.usage, body.usage_from, "usage")
    result = await call(
        body.request_id, usage, status=body.status, reason=body.reason,
        provider=body.provider, model=body.model, subject=body.subject,
        tenant=caller.within(body.tenant),
    )  # fmt: skip
    # A ready response: FastAPI's generic encoder would walk the dict again, slowly.
    return Json(_committed(result, gov))


async def do_release(body: ReleaseBody, caller: Caller, gov: Governor) -> Response:
    caller.may_write_usage()
    release = partial(gov.release, body.request_id, body.reason, tenant=caller.within(body.tenant))
    state = await run_in_threadpool(release) if _blocking(gov) else release()
    return Json({"request_id": body.request_id, "state": state.value})


@router.post("/events", response_model=None, responses=documented(CommitsOut))
def ingest(body: EventsBody, caller: CallerDep, gov: GovernorDep) -> Json:
    """Record a batch of post-hoc calls, idempotent per request id."""
    caller.may_write_usage()
    for i, event in enumerate(body.events):
        caller.tenant(_tenant_of(event.subject, f"events[{i}].subject"))
    items = [e.model_dump(exclude_none=True, exclude={"usage_from"}) for e in body.events]
    for i, (item, event) in enumerate(zip(items, body.events, strict=True)):
        item["usage"] = _usage(event.usage, event.usage_from, f"events[{i}].usage")
    results = gov.record_many(items)
    return Json({"events": [_committed(r, gov) for r in results]})


def _usage(usage: dict[str, Any], provider: str | None, field: str) -> dict[str, Any] | Usage:
    """``usage`` as sent: allotment's fields, or (``usage_from``) a provider's usage object."""
    if provider is None:
        return usage
    try:
        return usage_from(provider, usage)
    except ValidationError as exc:
        path = exc.field.removeprefix("usage").lstrip(".")
        raise ValidationError(f"{field}.{path}" if path else field, exc.message) from None


def _on_the_wire(exc: ValidationError) -> ValidationError:
    """``exc`` naming the field as the caller sent it."""
    name = _WIRE_NAMES.get(exc.field)
    return exc if name is None else ValidationError(name, exc.message)


def _batching(gov: Governor) -> bool:
    """Whether the store queues calls for shared transactions (then they are awaited)."""
    return hasattr(gov.store, "authorize_async")


def _blocking(gov: Governor) -> bool:
    """Whether the store waits on the network (then calls are awaited, not run inline)."""
    return bool(getattr(gov.store, "blocking", False))


def _now(method: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """``method`` as a coroutine that runs it at once, on the loop (embedded stores)."""

    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        return method(*args, **kwargs)

    return run


def _tenant_of(subject: dict[str, Any], where: str = "subject") -> str | None:
    tenant = subject.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        field = f"{where}.tenant"
        raise ApiError(422, "invalid_request", f"{field}: must be a string", field)
    return tenant


def _committed(result: CommitResult, gov: Governor) -> dict[str, Any]:
    if result.late and not result.replayed:
        LATE_COMMITS.inc()
        for over in result.late_overshoot:
            LATE_OVERSHOOT.labels(over.meter).inc(over.amount)
    adjustments = []
    for a in result.adjustments:
        unit, money = _unit(a.meter, a.currency, gov.currency)
        adjustments.append({
            "budget_id": a.budget_id, "member": a.member, "estimated": a.estimated,
            "actual": a.actual, "difference": a.difference, "unit": unit, "currency": money,
        })  # fmt: skip
    return {
        "event": result.event.to_dict(),
        "replayed": result.replayed,
        "late": result.late,
        "adjustments": adjustments,
        "overshoot": [
            a for a, o in zip(adjustments, result.adjustments, strict=True) if o.difference < 0
        ],
        "late_overshoot": [
            o.to_dict() | {"currency": _unit(o.meter, o.currency, gov.currency)[1]}
            for o in result.late_overshoot
        ],
        "topups": list(result.topups),
    }


def _unit(meter: str | None, own: str | None, ledger: str) -> tuple[str | None, str | None]:
    """The base unit of a budget's amounts, and for cost its currency: its own, else the
    ledger's."""
    unit = None if meter is None else UNITS[meter]
    return unit, (own or ledger) if unit == "micros" else None


def _budget_headers(decision: Decision, currency: str) -> dict[str, str]:
    """The tightest enforced budget (``Decision.binding``): how much room is left (in
    ``X-Budget-Unit``, of ``X-Budget-Currency`` for cost) and when it resets."""
    tightest = decision.binding
    if tightest is None:
        return {}
    unit = UNITS[tightest.budget.meter]
    headers = {
        "X-Budget-Id": tightest.budget_id,
        "X-Budget-Remaining": str(tightest.remaining),
        "X-Budget-Unit": unit,
        "X-Budget-Percent-Used": f"{tightest.percent:.2f}",
    }
    if unit == "micros":
        headers["X-Budget-Currency"] = tightest.currency or currency
    if tightest.resets_at is not None:
        headers["X-Budget-Resets-At"] = tightest.resets_at.isoformat()
    return headers
