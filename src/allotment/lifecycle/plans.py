"""Plans: which plan a call runs under, and plans and assignments written.

``planned`` writes the member's plan into the call's subject (the ``plan``
tag, and ``plan_epoch`` after a ``reset``) before the budgets are resolved, so
the plan's budgets (``Plan.budgets``, matching ``tags.plan``) count and
enforce it like any other budget, and the ledger keeps the plan each call ran
under. See ``allotment.core.plans`` for the rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from allotment.core.budgets import EPOCH_TAG, Budget, Call, budget_key
from allotment.core.fx import FxRate
from allotment.core.plans import PLAN_TAG, Assignment, Plan, Usage, plan_key
from allotment.core.subjects import check_identifier
from allotment.errors import ConflictError, NotFoundError, ValidationError
from allotment.lifecycle import budgets as budget_steps
from allotment.lifecycle.budgets import counts_differently, rebuild_counters
from allotment.lifecycle.tx import BudgetTx, Config, PlannedTx

__all__ = ["assign", "delete_plan", "find_plan", "planned", "put_config", "put_plan"]


def planned(tx: PlannedTx, call: Call, from_subject: bool = False) -> Call:
    """``call`` with its member's plan in the subject's tags (unchanged when the tenant
    has no plans). The plan is the member's assignment, else the tenant's default
    plan; with ``from_subject`` (a deployment that trusts its callers), a ``plan``
    tag the caller sent wins. A tag naming no plan of the tenant is dropped."""
    plans = tx.plans_for(call.subject.tenant)
    if not plans:
        return call
    tags = dict(call.subject.tags)
    sent = tags.pop(PLAN_TAG, None)
    tags.pop(EPOCH_TAG, None)
    member = call.value(plans[0].per)
    plan: str | None = None
    if from_subject and sent is not None:
        plan = sent
    elif member is not None:
        assigned = tx.assignment(call.subject.tenant, member)
        if assigned is not None:
            plan = assigned.plan
            if assigned.epoch:
                tags[EPOCH_TAG] = str(assigned.epoch)
        else:
            plan = next((p.id for p in plans if p.default), None)
    if plan is not None and any(p.id == plan for p in plans):
        tags[PLAN_TAG] = plan
    if tags == dict(call.subject.tags):
        return call
    return call._replace(subject=replace(call.subject, tags=tuple(sorted(tags.items()))))


def find_plan(tx: Config, plan_id: str, tenant: str | None) -> Plan:
    """The plan ``plan_id`` as ``tenant`` sees it: its own, else the deployment-wide one."""
    check_identifier(tenant, "tenant")
    for key in ([plan_key(plan_id, tenant)] if tenant else []) + [plan_key(plan_id, None)]:
        found = tx.plan(key)
        if found is not None:
            return found
    raise NotFoundError(f"no plan with id {plan_id!r}")


def put_plan(tx: BudgetTx, plan: Plan) -> Plan:
    """Create or replace ``plan`` (its version is the stored one's plus one); recount
    the slots whose counting it changes. A tenant's plans count members of one
    dimension, have one default at most, and share no id with a budget."""
    tx.lock_config()
    previous = tx.plan(plan.key)
    others = [
        p for p in tx.all_plans(None) if p.key != plan.key and p.tenant in (None, plan.tenant)
    ]
    if any(p.per != plan.per for p in others):
        raise ValidationError("per", "a tenant's plans all count members of one dimension")
    if plan.default and any(p.default and p.tenant == plan.tenant for p in others):
        raise ValidationError("default", "the tenant has a default plan already")
    for budget in plan.budgets:
        if tx.budget(budget_key(budget.id, budget.tenant)) is not None:
            raise ConflictError(budget.id, "is a budget's id already")
    stored = replace(plan, version=1 if previous is None else previous.version + 1)
    tx.put_plan(stored)
    changed = [b for b in stored.budgets if previous is None or _recounted(previous, b)]
    if previous is not None and changed:
        rebuild_counters(tx, changed)
    return stored


def _recounted(previous: Plan, budget: Budget) -> bool:
    """Whether ``budget`` counts other usage than its slot did in ``previous``."""
    for old in previous.budgets:
        if old.slot == budget.slot:
            return counts_differently(old, budget)
    return True


def put_config(
    tx: BudgetTx, rates: Sequence[FxRate], budgets: Sequence[Budget], plans: Sequence[Plan]
) -> list[Plan]:
    """Set ``rates``, create or replace ``budgets``, then ``plans`` (a tenant's default
    last, so a config may move it), all in ``tx``: an error names the plan
    (``plans[1].default``) and nothing of the config stays."""
    budget_steps.put_config(tx, rates, budgets)
    stored: list[Plan | None] = [None] * len(plans)
    for i in sorted(range(len(plans)), key=lambda i: plans[i].default):
        try:
            stored[i] = put_plan(tx, plans[i])
        except ValidationError as exc:
            raise exc.within(f"plans[{i}]") from None
    return [p for p in stored if p is not None]


def delete_plan(tx: BudgetTx, plan: Plan) -> None:
    """Delete ``plan``. Members assigned to it are then on no plan (or the default):
    their counters stay, with the slots other plans share."""
    tx.lock_config()
    if tx.plan(plan.key) is None:
        raise NotFoundError(f"no plan with id {plan.id!r}")
    tx.delete_plan(plan.key)


def assign(
    tx: BudgetTx, tenant: str, member: str, plan_id: str, usage: Usage, now: datetime
) -> Assignment:
    """Put ``member`` of ``tenant`` on plan ``plan_id`` from the next request on;
    ``reset`` starts its windowed plan budgets afresh (a new epoch)."""
    check_identifier(tenant, "tenant", required=True)
    check_identifier(member, "member", required=True)
    tx.lock_config()  # assignments are rare: one at a time, so two resets make two epochs
    find_plan(tx, plan_id, tenant)
    previous = tx.assignment(tenant, member)
    epoch = 0 if previous is None else previous.epoch
    if usage is Usage.RESET:
        epoch += 1
    assignment = Assignment(tenant, member, plan_id, now, epoch, usage)
    tx.put_assignment(assignment)
    return assignment
