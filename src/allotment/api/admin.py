"""Budget and key administration over HTTP, confined to the caller's tenant
(``allotment.access`` says what a key may see and change)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from allotment._client_base import plan_json
from allotment.access import Caller, in_scope
from allotment.api.auth import CallerDep, GovernorDep
from allotment.api.bodies import JsonRoute
from allotment.api.contract import ERRORS, documented
from allotment.api.inputs import Changes, Config, Rate, Roles, Spec
from allotment.api.schemas import (
    BudgetOut,
    BudgetsOut,
    ConfigOut,
    KeyOut,
    KeysOut,
    RateOut,
    RatesOut,
)
from allotment.core.budgets import Budget
from allotment.core.fx import FxRate
from allotment.core.plans import Plan
from allotment.core.units import UNITS, shown
from allotment.errors import ValidationError
from allotment.governor import Governor

__all__ = ["budget_out", "found_budget", "router"]

router = APIRouter(prefix="/v1", tags=["admin"], route_class=JsonRoute)


class KeyBody(BaseModel):
    """A key to create: its role, its tenant (every role but admin has one), a name."""

    model_config = ConfigDict(extra="forbid")
    role: Roles = Field(description="admin, tenant_admin, service or viewer")
    tenant: str | None = None
    name: str | None = None


@router.get("/budgets", response_model=None, responses=documented(BudgetsOut))
def list_budgets(caller: CallerDep, gov: GovernorDep, tenant: str | None = None) -> Any:
    """Budgets of a tenant (and the deployment-wide ones that apply to it)."""
    caller.may_read()
    scope = caller.within(tenant)
    found = [b for b in gov.list_budgets() if in_scope(b, scope)]
    return {"budgets": [budget_out(b, gov.currency) for b in found]}


@router.post("/budgets", status_code=201, response_model=None, responses=documented(BudgetOut, 201))
def create_budget(spec: Spec, caller: CallerDep, gov: GovernorDep) -> dict[str, Any]:
    """Create a budget (tenant admins: only in their tenant)."""
    spec = caller.owned(spec)
    if _DERIVED.intersection(spec):
        spec = _agreed(spec, Budget.from_spec(_spec_part(spec)), gov.currency)
    return budget_out(gov.create_budget(spec), gov.currency)


@router.get("/budgets/{budget_id}", response_model=None, responses=documented(BudgetOut))
def get_budget(
    budget_id: str, caller: CallerDep, gov: GovernorDep, tenant: str | None = None
) -> dict[str, Any]:
    """One budget: the tenant's own, else the deployment-wide one with that id.

    Budget ids are scoped by tenant: an admin names ``tenant`` when several
    tenants have a budget with this id."""
    caller.may_read()
    return budget_out(found_budget(caller, gov, budget_id, tenant), gov.currency)


@router.patch("/budgets/{budget_id}", response_model=None, responses=documented(BudgetOut))
def update_budget(
    budget_id: str,
    changes: Changes,
    caller: CallerDep,
    gov: GovernorDep,
    tenant: str | None = None,
) -> dict[str, Any]:
    """Change fields of a budget (spec form, human units); found as GET finds it."""
    caller.may_manage()
    budget = found_budget(caller, gov, budget_id, tenant)
    caller.may_change(budget)
    spec = budget.to_spec()
    unknown = sorted(set(changes) - set(spec) - _DERIVED)
    if unknown:  # the fields are keyword arguments: another name would be a TypeError
        raise ValidationError(unknown[0], "is not a budget field")
    if _DERIVED.intersection(changes):
        changes = _agreed(changes, Budget.from_spec(spec | _spec_part(changes)), gov.currency)
    return budget_out(gov.update_budget(budget.id, changes, tenant=budget.tenant), gov.currency)


def budget_out(budget: Budget, currency: str) -> dict[str, Any]:
    """A budget as the API answers it: its spec (human units), its ``unit``, its limit
    in that unit and, for people, the limit with the currency's usual decimals
    (``currency`` is the ledger's, that of a cost budget naming none)."""
    return budget.to_spec() | _derived(budget, currency)


#: what answers add to the spec form; a body may send them back if they agree
_DERIVED = frozenset(("unit", "limit_units", "display"))


def _derived(budget: Budget, currency: str) -> dict[str, Any]:
    unit, limit = UNITS[budget.meter], budget.limit
    human = None if limit is None else shown(limit, unit, budget.currency or currency)
    return {"unit": unit, "limit_units": limit, "display": {"limit": human}}


def _spec_part(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in _DERIVED}


def _agreed(body: dict[str, Any], budget: Budget, currency: str) -> dict[str, Any]:
    """``body`` without the derived fields, once each one sent agrees with ``budget``."""
    derived = _derived(budget, currency)
    for name in sorted(_DERIVED.intersection(body)):
        if body[name] != derived[name]:
            raise ValidationError(name, f"does not agree with the budget: it is {derived[name]!r}")
    return _spec_part(body)


@router.delete("/budgets/{budget_id}", status_code=204, responses=ERRORS)
def delete_budget(
    budget_id: str, caller: CallerDep, gov: GovernorDep, tenant: str | None = None
) -> None:
    """Delete a budget (found as GET finds it); the ledger keeps every event."""
    caller.may_manage()
    budget = found_budget(caller, gov, budget_id, tenant)
    caller.may_change(budget)
    gov.delete_budget(budget.id, tenant=budget.tenant)


@router.post("/config", response_model=None, responses=documented(ConfigOut))
def apply_config(body: Config, caller: CallerDep, gov: GovernorDep) -> dict[str, Any]:
    """Apply a budgets file as JSON: its ``rates``, then its ``budgets``, then its
    ``plans`` (``allotment budgets set --file`` through the service). All of it is
    checked before anything is written; rates and budgets are then written in one
    transaction, each plan after them. Tenant admins: budgets and plans of their
    tenant only, and no rates (they are deployment-wide)."""
    caller.may_manage()
    for name in sorted(set(body) - _CONFIG):
        raise ValidationError(name, "is not a config field (rates, budgets, plans)")
    rates, budgets, plans = (body.get(name) or [] for name in ("rates", "budgets", "plans"))
    for name, value in (("rates", rates), ("budgets", budgets), ("plans", plans)):
        if not isinstance(value, list):
            raise ValidationError(name, "must be a list")
    if rates:
        caller.may_set_rates()
    owned = [caller.owned(b) if isinstance(b, dict) else b for b in budgets]
    owned_plans = [caller.owned(p) if isinstance(p, dict) else p for p in plans]
    saved = gov.apply_config(owned, rates, owned_plans)
    written = [Plan.from_spec(p) for p in owned_plans]  # valid: apply_config took them
    return {
        "budgets": [budget_out(b, gov.currency) for b in saved],
        "plans": [plan_json(gov.get_plan(p.id, tenant=p.tenant)) for p in written],
    }


_CONFIG = frozenset(("rates", "budgets", "plans"))


@router.get("/rates", response_model=None, responses=documented(RatesOut))
def list_rates(caller: CallerDep, gov: GovernorDep) -> dict[str, Any]:
    """Every exchange rate, by pair and effective time."""
    caller.may_read()
    return {"rates": [r.to_spec() for r in gov.rates()]}


@router.post("/rates", status_code=201, response_model=None, responses=documented(RateOut, 201))
def set_rate(body: Rate, caller: CallerDep, gov: GovernorDep) -> dict[str, str]:
    """Set an exchange rate (admins: rates are deployment-wide); cost budgets in either
    currency are recounted."""
    caller.may_set_rates()
    rate = FxRate.from_spec({"effective_from": gov.now()} | body, "")
    return gov.set_rate(rate.source, rate.target, rate.rate, rate.effective_from).to_spec()


@router.post("/keys", status_code=201, response_model=None, responses=documented(KeyOut, 201))
def create_key(body: KeyBody, caller: CallerDep, gov: GovernorDep) -> dict[str, Any]:
    """Create a key; its secret is in this response and never again."""
    tenant = caller.new_key_tenant(body.role, body.tenant)
    key, secret = gov.create_key(body.role, tenant, body.name)
    return key.to_dict() | {"secret": secret}


@router.get("/keys", response_model=None, responses=documented(KeysOut))
def list_keys(caller: CallerDep, gov: GovernorDep, tenant: str | None = None) -> dict[str, Any]:
    """Keys (never their secrets)."""
    caller.may_manage()
    return {"keys": [k.to_dict() for k in gov.list_keys(caller.within(tenant))]}


@router.delete("/keys/{key_id}", status_code=204, responses=ERRORS)
def revoke_key(key_id: str, caller: CallerDep, gov: GovernorDep) -> None:
    """Revoke a key at once."""
    caller.may_manage()
    gov.revoke_key(key_id, tenant=caller.within())


def found_budget(caller: Caller, gov: Governor, budget_id: str, tenant: str | None) -> Budget:
    """The budget ``budget_id`` as the caller's tenant (an admin: ``tenant``) sees it."""
    return caller.visible(gov.get_budget(budget_id, tenant=caller.within(tenant)))


def found_pool(caller: Caller, gov: Governor, pool_id: str, tenant: str | None) -> Budget:
    """The credit pool ``pool_id`` (a budget, or a plan's) as the caller's tenant sees it."""
    return caller.visible(gov.get_pool(pool_id, tenant=caller.within(tenant)))
