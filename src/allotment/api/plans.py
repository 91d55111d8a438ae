"""Plans (tiers) over HTTP: plans set, read and deleted, and which plan a member is on.

A plan is found as ``GET /v1/budgets/{id}`` finds a budget: a tenant's key
reaches its own, else the deployment-wide one; another tenant's is a 404.
Who may change it is ``allotment.access``'s to say, as for budgets
(``owned``, ``may_change``); a member's plan is assigned by a key that may
manage its tenant and read by one that may read it. Answers are the wire form
of ``allotment._client_base`` (``plan_json``), which the clients read back.

The assignment routes are declared before ``/{plan_id}``: ``assignments`` is
a path here, never a plan's id.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from allotment._client_base import plan_json
from allotment.access import Caller, in_scope
from allotment.api.auth import CallerDep, GovernorDep
from allotment.api.bodies import JsonRoute
from allotment.api.contract import ERRORS, documented
from allotment.api.inputs import PlanSpec
from allotment.api.schemas import AssignmentOut, PlanOut, PlansOut
from allotment.core.plans import Plan
from allotment.errors import NotFoundError, ValidationError
from allotment.governor import Governor

__all__ = ["router"]

router = APIRouter(prefix="/v1/plans", tags=["plans"], route_class=JsonRoute)

_WHOSE = "The plan's tenant: for an admin key, whose plan (else the deployment-wide one)"
_TENANT = "The member's tenant (an admin key names it; a tenant's key: its own)"
_MEMBER = "A value of the plans' ``per`` dimension (e.g. the install)"


class AssignmentBody(BaseModel):
    """Which plan a member is on from its next request."""

    model_config = ConfigDict(extra="forbid")
    tenant: str | None = Field(None, description=_TENANT)
    member: str = Field(description=_MEMBER)
    plan: str = Field(description="The plan's id: the tenant's own, else a deployment-wide one")
    usage: Literal["carry", "reset"] = Field(
        "carry",
        description="carry: keep what the member used in the current windows of the slots "
        "both plans have; reset: start its windowed plan budgets afresh. Lifetime quotas "
        "survive either",
    )


@router.put("/assignments", response_model=None, responses=documented(AssignmentOut))
def assign_plan(body: AssignmentBody, caller: CallerDep, gov: GovernorDep) -> dict[str, Any]:
    """Put a member on a plan (keys that may manage the tenant); it takes effect on the
    member's next request."""
    caller.may_manage()
    tenant = caller.tenant(body.tenant)
    return gov.assign_plan(tenant, body.member, body.plan, usage=body.usage).to_dict()


@router.get("/assignments", response_model=None, responses=documented(AssignmentOut))
def plan_of(
    caller: CallerDep,
    gov: GovernorDep,
    member: Annotated[str, Query(description=_MEMBER)],
    tenant: Annotated[str | None, Query(description=_TENANT)] = None,
) -> dict[str, Any]:
    """A member's assignment; 404 when it has none (it is on the tenant's default plan,
    if there is one)."""
    caller.may_read()
    assignment = gov.plan_of(caller.tenant(tenant), member)
    if assignment is None:
        raise NotFoundError(f"member {member!r} has no plan assigned")
    return assignment.to_dict()


@router.get("", response_model=None, responses=documented(PlansOut))
def list_plans(caller: CallerDep, gov: GovernorDep, tenant: str | None = None) -> dict[str, Any]:
    """Plans of a tenant, and the deployment-wide ones (an admin naming none: every plan)."""
    caller.may_read()
    scope = caller.within(tenant)
    return {"plans": [plan_json(p) for p in gov.list_plans() if in_scope(p, scope)]}


@router.put("/{plan_id}", response_model=None, responses=documented(PlanOut))
def set_plan(plan_id: str, spec: PlanSpec, caller: CallerDep, gov: GovernorDep) -> dict[str, Any]:
    """Create or replace a plan (spec form, human units; tenant admins: in their tenant
    only). Each change raises its ``version``; members on it have its budgets from their
    next request."""
    if spec.get("id", plan_id) != plan_id:
        raise ValidationError("id", f"must be the path's, {plan_id!r}, or left out")
    spec = caller.owned(spec | {"id": plan_id})
    key = spec.pop("key", None)
    plan = Plan.from_spec(spec)
    if key is not None and key != plan.key:
        raise ValidationError("key", f"does not agree with the plan: it is {plan.key!r}")
    return plan_json(gov.set_plan(plan))


@router.get("/{plan_id}", response_model=None, responses=documented(PlanOut))
def get_plan(
    plan_id: str,
    caller: CallerDep,
    gov: GovernorDep,
    tenant: Annotated[str | None, Query(description=_WHOSE)] = None,
) -> dict[str, Any]:
    """One plan: the tenant's own, else the deployment-wide one with that id."""
    caller.may_read()
    return plan_json(found_plan(caller, gov, plan_id, tenant))


@router.delete("/{plan_id}", status_code=204, responses=ERRORS)
def delete_plan(
    plan_id: str,
    caller: CallerDep,
    gov: GovernorDep,
    tenant: Annotated[str | None, Query(description=_WHOSE)] = None,
) -> None:
    """Delete a plan (found as GET finds it); its members are then on the tenant's
    default plan, if any, and their counters stay."""
    caller.may_manage()
    plan = found_plan(caller, gov, plan_id, tenant)
    caller.may_change(plan)
    gov.delete_plan(plan.id, tenant=plan.tenant)


def found_plan(caller: Caller, gov: Governor, plan_id: str, tenant: str | None) -> Plan:
    """The plan ``plan_id`` as the caller's tenant (an admin: ``tenant``) sees it."""
    return caller.visible(gov.get_plan(plan_id, tenant=caller.within(tenant)))
