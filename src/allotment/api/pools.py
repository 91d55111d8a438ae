"""Credit pools over HTTP: grants added and voided, a member's credit and auto top-up,
auto top-up resumed after a failed payment, the credit ledger.

A pool is a budget with ``credits: true`` (or a plan's: ``core.credits``), found
as ``GET /v1/budgets/{id}`` finds a budget (``admin.found_pool``: a tenant's key
reaches its own, else the deployment-wide one; another tenant's is a 404). Who may add or void its
grants, and whose credit a read covers, is ``allotment.access``'s to say
(``may_change``, ``pool_member``). Amounts in a body are human units of the
pool's meter (``"12.50"`` USD, ``100`` credits); answers give integers in
``unit`` with ``display``, in the wire form ``allotment._client_base`` writes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from pydantic.json_schema import WithJsonSchema

from allotment._client_base import credit_entry_json, grant_json, pool_answer
from allotment.access import Caller
from allotment.api.admin import found_pool
from allotment.api.auth import CallerDep, GovernorDep
from allotment.api.bodies import JsonRoute
from allotment.api.contract import documented
from allotment.api.responses import Json
from allotment.api.schemas import AddedGrantOut, CreditPage, GrantOut, PoolOut, ResumedOut
from allotment.core.budgets import Budget
from allotment.errors import ValidationError
from allotment.governor import Governor

__all__ = ["router"]

router = APIRouter(prefix="/v1/pools", tags=["credits"], route_class=JsonRoute)

_INT32 = 2**31
#: the largest credit entry id a cursor may name (a 64-bit row id)
_MAX_ID = 2**63 - 1
_WHOSE = "The pool's tenant: for an admin key when several tenants have a pool with this id"
_MEMBER = "The member of a pool counted ``per`` a dimension (e.g. the user); omit otherwise"
_HUMAN = 'Human units of the pool\'s meter: "12.50" for a USD pool, 100 credits'
_DECIMAL = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"}
#: a human amount (the Governor reads it, and names ``amount`` when it is bad)
Amount = Annotated[
    Any, WithJsonSchema({"anyOf": [{"type": "integer"}, _DECIMAL], "description": _HUMAN})
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GrantBody(_Body):
    """A grant to add: an amount in human units of the pool's meter, and its terms."""

    amount: Amount
    tenant: str | None = Field(None, description=_WHOSE)
    member: str = Field("", description=_MEMBER)
    kind: Literal["purchase", "promotional", "top_up", "adjustment"] = "purchase"
    priority: StrictInt = Field(0, ge=-_INT32, lt=_INT32, description="Lower burns first")
    effective_at: str | None = Field(
        None, description="ISO 8601 with a UTC offset: it counts from then (default: now)"
    )
    expires_at: str | None = Field(
        None, description="ISO 8601 with a UTC offset: it counts until then (default: never)"
    )
    idempotency_key: str | None = Field(
        None,
        description="A payment id: the same grant sent again answers 200 with the one "
        "added before; other terms under the same key are a 409",
    )
    metadata: dict[str, str] | None = Field(None, description="At most 32 strings")
    id: str | None = Field(None, description="The grant's id (default: generated)")


class MemberBody(_Body):
    """Which pool, and which member of it."""

    tenant: str | None = Field(None, description=_WHOSE)
    member: str = Field("", description=_MEMBER)


#: a grant ``POST`` added before, answered again
_REPLAYED: dict[int | str, dict[str, Any]] = {
    200: {"model": AddedGrantOut, "description": "An idempotent replay: the grant added before"}
}


@router.post(
    "/{pool_id}/grants",
    status_code=201,
    response_model=None,
    responses=documented(AddedGrantOut, 201, _REPLAYED),
)
def add_grant(pool_id: str, body: GrantBody, caller: CallerDep, gov: GovernorDep) -> Json:
    """Add a grant to a credit pool (keys that may change the pool's budget); it repays
    the member's debt first. Idempotent per ``idempotency_key`` (or ``id``): 201 when
    added, 200 with the same grant when added before."""
    budget = _changed(caller, gov, pool_id, body.tenant)
    grant, added = gov.add_grant(
        budget.id, body.amount, tenant=budget.tenant, member=body.member, kind=body.kind,
        priority=body.priority, effective_at=_instant(body.effective_at, "effective_at"),
        expires_at=_instant(body.expires_at, "expires_at"),
        idempotency_key=body.idempotency_key, metadata=body.metadata, grant_id=body.id,
    )  # fmt: skip
    answer = grant_json(grant, budget, gov.currency) | {"replayed": not added}
    return Json(answer, 201 if added else 200)


@router.post(
    "/{pool_id}/grants/{grant_id}/void", response_model=None, responses=documented(GrantOut)
)
def void_grant(
    pool_id: str,
    grant_id: str,
    caller: CallerDep,
    gov: GovernorDep,
    body: Annotated[MemberBody | None, Body()] = None,
) -> dict[str, Any]:
    """Void a grant: what it has left is gone; calls holding some of it keep their hold.
    Voiding twice changes nothing."""
    whose = body or MemberBody(tenant=None, member="")
    budget = _changed(caller, gov, pool_id, whose.tenant)
    voided = gov.void_grant(budget.id, grant_id, tenant=budget.tenant, member=whose.member)
    return grant_json(voided, budget, gov.currency)


@router.post("/{pool_id}/topups/resume", response_model=None, responses=documented(ResumedOut))
def resume_topups(
    pool_id: str,
    caller: CallerDep,
    gov: GovernorDep,
    body: Annotated[MemberBody | None, Body()] = None,
) -> dict[str, Any]:
    """Re-enable a member's auto top-up after a failed payment (keys that may change the
    pool's budget). ``resumed`` is false when it was not paused: nothing changed."""
    whose = body or MemberBody(tenant=None, member="")
    budget = _changed(caller, gov, pool_id, whose.tenant)
    resumed = gov.resume_topups(budget.id, tenant=budget.tenant, member=whose.member)
    return {"resumed": resumed}


@router.get("/{pool_id}", response_model=None, responses=documented(PoolOut))
def pool(
    pool_id: str,
    caller: CallerDep,
    gov: GovernorDep,
    tenant: Annotated[str | None, Query(description=_WHOSE)] = None,
    member: Annotated[str | None, Query(description=_MEMBER)] = None,
) -> dict[str, Any]:
    """Where a member's credit stands: each grant's balance (in burn order), what they
    have left in all, the debt the next grant repays first, and the pool's auto top-up
    (why it is not buying, if it is not, and the member's latest top-up)."""
    budget, member = _read(caller, gov, pool_id, tenant, member)
    return pool_answer(gov, budget.id, budget.tenant, member or "")


@router.get("/{pool_id}/ledger", response_model=None, responses=documented(CreditPage))
def ledger(
    pool_id: str,
    caller: CallerDep,
    gov: GovernorDep,
    tenant: Annotated[str | None, Query(description=_WHOSE)] = None,
    member: Annotated[str | None, Query(description="Only this member's entries")] = None,
    after_id: Annotated[int, Query(ge=0, le=_MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The pool's credit ledger, oldest first, each entry with the member's balance
    after it; cursor-paginated by entry id (``next_after_id``)."""
    budget, member = _read(caller, gov, pool_id, tenant, member)
    entries = gov.credit_ledger(
        budget.id, tenant=budget.tenant, member=member, after_id=after_id, limit=limit
    )
    page = [credit_entry_json(e, budget, gov.currency) for e in entries]
    next_after_id = entries[-1].id if len(entries) == limit else None
    return {"pool": budget.id, "tenant": budget.tenant, "entries": page,
            "next_after_id": next_after_id}  # fmt: skip


def _changed(caller: Caller, gov: Governor, pool_id: str, tenant: str | None) -> Budget:
    """The pool whose grants the caller adds or voids (as it would change the budget)."""
    caller.may_manage()
    budget = found_pool(caller, gov, pool_id, tenant)
    caller.may_change(budget)
    return budget


def _read(
    caller: Caller, gov: Governor, pool_id: str, tenant: str | None, member: str | None
) -> tuple[Budget, str | None]:
    """The pool the caller reads, and the member the read covers (None: every one)."""
    caller.may_read()
    budget = found_pool(caller, gov, pool_id, tenant)
    return budget, caller.pool_member(budget, member)


def _instant(value: str | None, field: str) -> datetime | None:
    """An ISO 8601 time with its UTC offset (a naive one would depend on the server's
    zone); None stays None."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(field, "must be an ISO 8601 time with a UTC offset") from None
    if parsed.tzinfo is None:
        raise ValidationError(field, "needs a UTC offset (e.g. 2026-12-01T00:00:00Z)")
    try:
        parsed.astimezone(UTC)
    except OverflowError:
        raise ValidationError(field, "is out of range") from None
    return parsed
