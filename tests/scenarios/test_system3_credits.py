"""User system 3 end to end (issue 18): a subscription-period USD budget, then extra
credit, auto top-up up to a monthly cap, and what the end user and the operator see.

Through the library on every store; ``test_systems_http.py`` runs it through
the HTTP service.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from allotment.core.decisions import Reason
from allotment.core.topups import TopUpStatus
from allotment.governor import Governor
from allotment.payments import TestGateway
from allotment.store.base import EventQuery

PERIOD = {"kind": "billing", "start": "2026-11-15T09:30:00Z", "end": "2026-12-15T09:30:00Z"}
SUBSCRIPTION = {
    "id": "sub", "tenant": "desk", "meter": "cost", "window": PERIOD, "per": "user",
    "limit": "20.00", "currency": "USD", "credits": True,
    "auto_topup": {"threshold": "5.00", "amount": "10.00", "monthly_cap": "20.00"},
}  # fmt: skip


def customer(user: str) -> dict[str, str]:
    return {"tenant": "desk", "user": user, "device": "d-1"}


def call(gov: Governor, request_id: str, user: str, dollars: str) -> Any:
    """A call estimated and used at ``dollars``; the decision if refused, else the commit."""
    decision = gov.authorize(request_id, customer(user), "openai", "gpt-4o-mini",
                             {"cost": dollars})  # fmt: skip
    if not decision.allowed:
        return decision
    return gov.commit(request_id, {"cost": dollars, "output_tokens": 10})


@pytest.fixture
def desk(make_governor: Callable[..., Governor]) -> tuple[Governor, TestGateway]:
    gateway = TestGateway()
    gov: Governor = make_governor(gateway=gateway, topup_worker=False)
    gov.create_budget(SUBSCRIPTION)
    return gov, gateway


def test_period_budget_then_extra_credit_then_auto_top_up_to_the_cap(
    desk: tuple[Governor, TestGateway],
) -> None:
    gov, gateway = desk
    gov.add_grant("sub", "10.00", member="cust-1", idempotency_key="stripe_pi_1")
    for i in range(3):
        call(gov, f"p{i}", "cust-1", "6.00")  # 18 of the 20 dollars of the period
    [view] = gov.status(customer("cust-1"))
    shown = view.to_dict(client=True)  # what the desktop app shows: percent only
    assert shown["percent_available"] == "10.00" and shown["warning"] is True
    assert shown["extra_credit"] == {"active": False, "auto_topup": None}
    assert "used" not in shown and "limit" not in shown and "credit" not in shown
    drew = call(gov, "x1", "cust-1", "6.00")  # 2 from the period, 4 of extra credit
    assert drew.topups == ()  # 6 left: above the 5 dollar threshold
    [view] = gov.status(customer("cust-1"))
    assert view.to_dict(client=True)["extra_credit"]["active"] is True
    low = call(gov, "x2", "cust-1", "2.00")  # 4 left: one top-up starts
    assert len(low.topups) == 1
    [paid] = gov.run_topups()
    assert paid.amount == 10_000_000 and gateway.requests[0].amount == 10
    call(gov, "x3", "cust-1", "10.00")  # 4 left again: the second top-up, 20 of the cap of 20
    gov.run_topups()
    call(gov, "x4", "cust-1", "10.00")  # 4 left: a third would pass the monthly cap
    assert gov.run_topups() == [] and len(gateway.paid) == 2
    refused = call(gov, "x5", "cust-1", "5.00")
    assert not refused.allowed and refused.reason is Reason.CREDITS_EXHAUSTED
    client = refused.budgets[0].to_dict(client=True)["extra_credit"]["auto_topup"]
    assert client["status"] == TopUpStatus.MONTHLY_LIMIT_REACHED.value
    assert client["message"].startswith("You have reached this month's automatic top-up limit")
    operator = gov.status(customer("cust-1"))[0].to_dict()  # the operator sees amounts
    assert (operator["used"], operator["limit"]) == (20_000_000, 20_000_000)
    assert operator["credit"]["available"] == 4_000_000 and operator["credit"]["debt"] == 0
    assert operator["credit"]["display"]["available"] == "4.00"
    blocked = gov.events(EventQuery(tenant="desk", status="blocked"))  # type: ignore[arg-type]
    assert [(e.reason, e.usage.cost_micros) for e in blocked] == [("credits_exhausted", 0)]


def test_a_failed_payment_is_reported_to_the_end_user(
    desk: tuple[Governor, TestGateway],
) -> None:
    gov, gateway = desk
    gateway.outcome = "failed"
    gov.add_grant("sub", "8.00", member="cust-2")
    call(gov, "p", "cust-2", "20.00")  # the period's allowance is gone
    assert len(call(gov, "x", "cust-2", "4.00").topups) == 1  # 4 left: below 5
    [failed] = gov.run_topups()
    assert failed.state.value == "failed"
    refused = call(gov, "y", "cust-2", "5.00")
    assert not refused.allowed
    client = refused.budgets[0].to_dict(client=True)["extra_credit"]["auto_topup"]
    assert client["status"] == "auto_topup_failed" and "payment" in client["message"]
    assert call(gov, "z", "cust-2", "1.00").topups == ()  # paused: no second attempt
    assert gov.resume_topups("sub", member="cust-2")
    gateway.outcome = "succeeded"
    assert len(call(gov, "w", "cust-2", "1.00").topups) == 1


def test_provider_errors_are_error_events_with_zero_usage(
    desk: tuple[Governor, TestGateway],
) -> None:
    gov, _ = desk
    gov.authorize("e", customer("cust-3"), "openai", "gpt-4o-mini", {"cost": "1.00"})
    result = gov.commit("e", {"cost": "0"}, status="error", reason="upstream 503")
    assert (result.event.status.value, result.event.usage.cost_micros) == ("error", 0)
    assert gov.status(customer("cust-3"))[0].used == 0
