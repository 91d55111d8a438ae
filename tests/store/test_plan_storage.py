"""Plans and assignments as every backend stores them (issue 18).

A plan is configuration, as budgets are: SQL stores cache it per process, with
the budgets, and every change bumps the config version, so another process (or
another store on the same database) sees it on its next transaction. Its
budgets (``Plan.budgets``) apply with the others, ``in_order``. A transaction
sees its own configuration changes, and one rolled back leaves nothing in any
cache. Assignments are not configuration: read as they are, per call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from allotment.core.budgets import Budget, in_order
from allotment.core.plans import Assignment, Plan, Usage
from allotment.governor import Governor

ACME = {"tenant": "acme", "user": "u1"}


def plan(plan_id: str, tenant: str | None, limit: int = 100, *, default: bool = False) -> Plan:
    return Plan.from_spec({
        "id": plan_id, "tenant": tenant, "per": "user", "default": default, "name": plan_id.title(),
        "budgets": [
            {"id": "tokens", "meter": "tokens", "window": "day", "limit": limit},
            {"id": "calls", "meter": "requests", "window": "lifetime", "limit": 10 * limit},
        ],
    })  # fmt: skip


def budget(budget_id: str, tenant: str | None) -> Budget:
    spec = {"id": budget_id, "tenant": tenant, "meter": "tokens", "window": "day", "limit": 1000}
    return Budget.from_spec(spec)


def write(gov: Governor, operation: Callable[[Any], Any]) -> Any:
    return gov.store._write(operation)  # type: ignore[attr-defined]


def read(gov: Governor, operation: Callable[[Any], Any]) -> Any:
    return gov.store._read(operation)  # type: ignore[attr-defined]


def keys(plans: Sequence[Plan]) -> list[str]:
    return sorted(p.key for p in plans)


def applied(gov: Governor, tenant: str) -> list[Budget]:
    return list(read(gov, lambda tx: tx.budgets_for(tenant)))


def test_a_plan_reads_back_as_it_was_put(gov: Governor) -> None:
    pro = plan("pro", "acme")
    assert read(gov, lambda tx: tx.plan(pro.key)) is None
    write(gov, lambda tx: tx.put_plan(pro))
    stored = read(gov, lambda tx: tx.plan(pro.key))
    assert stored == pro and stored.key == "acme#pro"
    assert Plan.from_spec(stored.to_spec()) == pro
    assert stored.budgets == pro.budgets
    assert [b.key for b in stored.budgets] == ["acme#~tokens", "acme#~calls"]


def test_plans_and_their_budgets_apply_to_their_tenant(gov: Governor) -> None:
    pro, wide, other = plan("pro", "acme"), plan("basic", None), plan("pro", "globex")
    daily = budget("daily", "acme")
    write(gov, lambda tx: [tx.put_plan(p) for p in (pro, wide, other)] + [tx.put_budget(daily)])
    assert keys(read(gov, lambda tx: tx.plans_for("acme"))) == ["acme#pro", "basic"]
    assert keys(read(gov, lambda tx: tx.plans_for("initech"))) == ["basic"]
    expected = in_order([daily, *pro.budgets, *wide.budgets])
    assert applied(gov, "acme") == expected
    assert applied(gov, "initech") == in_order(wide.budgets)  # deployment-wide: every tenant's


def test_all_plans_lists_wide_ones_first_then_by_id(gov: Governor) -> None:
    plans = [plan("pro", "globex"), plan("max", None), plan("core", "acme"), plan("pro", "acme"),
             plan("basic", None)]  # fmt: skip
    write(gov, lambda tx: [tx.put_plan(p) for p in plans])
    every = read(gov, lambda tx: tx.all_plans(None))
    assert [p.key for p in every] == ["basic", "max", "acme#core", "acme#pro", "globex#pro"]
    assert [p.key for p in read(gov, lambda tx: tx.all_plans("acme"))] == ["acme#core", "acme#pro"]


def test_replacing_a_plan_reaches_another_governor(make_governor: Callable[..., Governor]) -> None:
    first, second = make_governor(), make_governor()
    write(first, lambda tx: tx.put_plan(plan("pro", "acme", 100)))
    assert [b.limit for b in applied(second, "acme")] == [1000, 100]  # loaded, and cached
    write(first, lambda tx: tx.put_plan(plan("pro", "acme", 200)))  # the same key
    assert [b.limit for b in applied(second, "acme")] == [2000, 200]
    [seen] = read(second, lambda tx: tx.plans_for("acme"))
    assert seen == plan("pro", "acme", 200)
    write(first, lambda tx: tx.delete_plan("acme#pro"))
    assert read(second, lambda tx: tx.plans_for("acme")) == []
    assert applied(second, "acme") == []


def test_deleting_a_plan_removes_it_and_its_budgets(gov: Governor) -> None:
    pro, core, daily = plan("pro", "acme"), plan("core", "acme", 50), budget("daily", "acme")
    write(gov, lambda tx: [tx.put_plan(pro), tx.put_plan(core), tx.put_budget(daily)])
    write(gov, lambda tx: tx.delete_plan(pro.key))
    assert read(gov, lambda tx: tx.plan(pro.key)) is None
    assert keys(read(gov, lambda tx: tx.all_plans(None))) == ["acme#core"]
    assert applied(gov, "acme") == in_order([daily, *core.budgets])
    write(gov, lambda tx: tx.delete_plan(pro.key))  # already gone: nothing to do


def test_a_transaction_sees_its_own_plan_changes(gov: Governor) -> None:
    """A recount after ``put_plan`` resolves against the plan it just put."""

    def change(tx: Any) -> list[int | None]:
        tx.lock_config()
        assert tx.all_plans(None) == []  # the configuration, read before the change
        tx.put_plan(plan("pro", "acme", 100))
        seen = [b.limit for b in tx.budgets_for("acme")]
        tx.put_plan(plan("pro", "acme", 300))
        return seen + [b.limit for b in tx.budgets_for("acme")]

    assert write(gov, change) == [1000, 100, 3000, 300]
    assert [b.limit for b in applied(gov, "acme")] == [3000, 300]


def test_a_rolled_back_plan_reaches_no_cache(make_governor: Callable[..., Governor]) -> None:
    """A configuration loaded inside a transaction that then rolls back is never kept,
    even once another change commits under the version it had."""
    gov, other = make_governor(), make_governor()

    def fail(tx: Any) -> None:
        tx.put_plan(plan("pro", "acme"))
        assert keys(tx.plans_for("acme")) == ["acme#pro"]
        raise LookupError("rolled back")

    with pytest.raises(LookupError):
        write(gov, fail)
    daily = budget("daily", "acme")
    write(other, lambda tx: tx.put_budget(daily))  # the version the rolled-back change had
    for governor in (gov, other):
        assert read(governor, lambda tx: tx.plans_for("acme")) == []
        assert applied(governor, "acme") == [daily]


def test_put_config_backfills_every_new_budget(gov: Governor) -> None:
    """Each budget ``put_config`` adds is recounted against the configuration that has
    it (SQL stores once recounted the second against what they loaded for the first)."""
    gov.record("p", ACME, "openai", "m", {"input_tokens": 5})
    gov.store.put_config([], [budget("a", "acme"), budget("b", "acme")])
    assert [(v.budget.id, v.used) for v in gov.status(ACME)] == [("a", 5), ("b", 5)]


def test_assignments_upsert_and_read_back(gov: Governor) -> None:
    at = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
    first = Assignment("acme", "u1", "pro", at)
    assert read(gov, lambda tx: tx.assignment("acme", "u1")) is None
    write(gov, lambda tx: tx.put_assignment(first))
    assert read(gov, lambda tx: tx.assignment("acme", "u1")) == first
    moved = Assignment("acme", "u1", "core", at.replace(hour=13), epoch=1, usage=Usage.RESET)
    neighbours = [Assignment("acme", "u2", "max", at), Assignment("globex", "u1", "pro", at)]
    write(gov, lambda tx: [tx.put_assignment(a) for a in (moved, *neighbours)])
    assert read(gov, lambda tx: tx.assignment("acme", "u1")) == moved
    for a in neighbours:
        assert read(gov, lambda tx, a=a: tx.assignment(a.tenant, a.member)) == a
    assert read(gov, lambda tx: tx.assignment("acme", "u3")) is None


def test_batched_calls_count_on_their_members_plans(gov: Governor) -> None:
    """Calls that share group-commit batches (``BatchTx``) find their members' plans:
    the tenant's default, or the one assigned. Each plan's limit admits exactly its calls."""
    write(gov, lambda tx: [tx.put_plan(plan("core", "acme", 5, default=True)),
                           tx.put_plan(plan("pro", "acme", 8))])  # fmt: skip
    at = gov.now()
    write(gov, lambda tx: tx.put_assignment(Assignment("acme", "pro-user", "pro", at)))

    def call(i: int) -> bool:
        user = "pro-user" if i % 2 else "core-user"
        subject = {"tenant": "acme", "user": user}
        return gov.authorize(f"r{i}", subject, "openai", "m", {"input_tokens": 1}).allowed

    with ThreadPoolExecutor(8) as pool:
        allowed = list(pool.map(call, range(40)))
    assert sum(allowed[1::2]) == 8 and sum(allowed[0::2]) == 5
