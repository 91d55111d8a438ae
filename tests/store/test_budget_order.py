"""Budgets come in one order on every backend (issue 17: one home per rule).

A decision checks budgets in the order the store hands them over, and its
first refusal names the budget a refused call's answer (the API's 402 body)
reports. The order is ``allotment.core.budgets.in_order``: deployment-wide
budgets first, then the tenant's, each by id. Budgets are created here out
of that order, so a store that kept its own (insertion order, say) would
name another budget first.
"""

from __future__ import annotations

from typing import Any

from allotment.core.budgets import in_order
from allotment.governor import Governor

ACME = {"tenant": "acme", "user": "u1"}
#: created in this order, none of them in id order
CREATED = [("acme", "b-tenant"), (None, "z-wide"), ("acme", "a-tenant"), ("globex", "a-tenant"),
           (None, "m-wide")]  # fmt: skip
#: the budgets that apply to acme's calls, in the one order
APPLIED = ["m-wide", "z-wide", "a-tenant", "b-tenant"]


def spec(tenant: str | None, budget_id: str) -> dict[str, Any]:
    return {"id": budget_id, "tenant": tenant, "meter": "tokens", "window": "day", "limit": 100}


def create_all(gov: Governor) -> None:
    for tenant, budget_id in CREATED:
        gov.create_budget(spec(tenant, budget_id))


def test_every_backend_names_the_same_first_refusal(gov: Governor) -> None:
    create_all(gov)
    refused = gov.authorize("r1", ACME, "openai", "m", {"input_tokens": 500})
    assert not refused.allowed
    assert refused.refusals[0].budget_id == "m-wide"
    assert [r.budget_id for r in refused.refusals] == APPLIED
    assert [v.budget.id for v in refused.budgets] == APPLIED


def test_a_refusal_of_some_budgets_names_the_first_in_order(gov: Governor) -> None:
    create_all(gov)
    gov.update_budget("b-tenant", {"limit": 10}, tenant="acme")
    gov.update_budget("z-wide", {"limit": 10})
    refused = gov.authorize("r1", ACME, "openai", "m", {"input_tokens": 50})
    assert [r.budget_id for r in refused.refusals] == ["z-wide", "b-tenant"]


def test_status_lists_the_applicable_budgets_in_order(gov: Governor) -> None:
    create_all(gov)
    assert [v.budget.id for v in gov.status(ACME)] == APPLIED
    assert [v.budget.id for v in gov.status({"tenant": "globex"})] == ["m-wide", "z-wide",
                                                                      "a-tenant"]  # fmt: skip


def test_list_budgets_in_order(gov: Governor) -> None:
    create_all(gov)
    listed = gov.list_budgets()
    assert [b.key for b in listed] == [
        "m-wide", "z-wide", "acme#a-tenant", "globex#a-tenant", "acme#b-tenant"
    ]  # fmt: skip
    assert listed == in_order(reversed(listed))
    assert [b.key for b in gov.list_budgets("acme")] == ["acme#a-tenant", "acme#b-tenant"]


def test_the_order_survives_updates(gov: Governor) -> None:
    create_all(gov)
    gov.update_budget("m-wide", {"limit": 1000})  # rewritten last: still first
    gov.delete_budget("a-tenant", tenant="acme")
    gov.create_budget(spec("acme", "a-tenant"))
    assert [v.budget.id for v in gov.status(ACME)] == APPLIED
