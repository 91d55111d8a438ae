"""User systems 1, 2 and 5 through the HTTP service, as they pass through the library.

The Python client talks to the real app in-process; the governor behind it
runs on the test's clock and store (both backends).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from allotment.api import create_app
from allotment.client import Client
from allotment.governor import Governor
from allotment.pricing import ModelRate, StaticPricer
from tests.conftest import Clock


def remote(gov: Governor, role: str = "admin", tenant: str | None = None) -> Client:
    _, secret = gov.create_key(role, tenant)
    return Client("http://allotment", secret, http=TestClient(create_app(gov)))


def test_system1_crm_token_budgets(gov: Governor, clock: Clock) -> None:
    admin = remote(gov)
    admin.create_budget({"id": "port-a-day", "tenant": "port-a", "meter": "tokens",
                         "window": "day", "limit": 10_000})  # fmt: skip
    port = remote(gov, "service", "port-a")
    subject = {"tenant": "port-a", "user": "u1", "feature": "summarize"}
    assert port.authorize("1", subject, "openai", "gpt-4o-mini", {"output_tokens": 1000}).allowed
    port.commit("1", {"input_tokens": 6000, "output_tokens": 1500})
    banner = port.authorize("2", subject, "openai", "gpt-4o-mini", {"output_tokens": 1000})
    assert [w.code for w in banner.warnings] == ["soft_threshold"]
    port.commit("2", {"input_tokens": 1000, "output_tokens": 500})
    too_big = port.authorize("3", subject, "openai", "gpt-4o-mini", {"output_tokens": 1001})
    assert too_big.refusals[0].reason == "estimate_exceeds_remaining"
    port.record("4", subject, "openai", "gpt-4o-mini", {"input_tokens": 1000})
    capped = port.authorize("5", subject, "openai", "gpt-4o-mini", {"output_tokens": 1})
    assert capped.refusals[0].reason == "hard_cap_exceeded"
    assert capped.refusals[0].resets_at == "2026-11-24T00:00:00+00:00"
    clock.now = datetime(2026, 11, 24, tzinfo=UTC)
    assert port.authorize("6", subject, "openai", "gpt-4o-mini", {"output_tokens": 1}).allowed
    viewer = remote(gov, "viewer", "port-a")
    rows = viewer.usage("port-a", by=["feature"], since="2026-11-23T00:00:00Z")
    assert [(r.group.feature, r.calls) for r in rows] == [("summarize", 3)]


def test_system2_gateway_cost_policies(make_governor: Callable[..., Governor]) -> None:
    rates = {"claude-3-5-haiku": ModelRate(input=Decimal("0.80"), output=Decimal("4.00"))}
    gov: Governor = make_governor(currency="EUR", pricer=StaticPricer(rates, "EUR"))
    admin = remote(gov)
    common = {"tenant": "globex", "meter": "cost", "per": "user", "window": "day",
              "currency": "EUR", "exclude": {"tags.byok": "true"}}  # fmt: skip
    admin.create_budget(common | {"id": "org", "limit": "1.00"})
    admin.create_budget(common | {"id": "interns", "limit": "0.20", "match": {"group": "interns"}})
    admin.create_budget(common | {"id": "alice", "limit": "3.00", "match": {"user": "alice"},
                                  "overrides": True})  # fmt: skip
    gw = remote(gov, "service", "globex")
    call = {"input_tokens": 1000, "output_tokens": 100_000}  # 0.4008 EUR
    ivan = {"tenant": "globex", "user": "ivan", "groups": ["interns"]}
    assert gw.authorize("i1", ivan, "anthropic", "claude-3-5-haiku", call).refusals[
        0
    ].budget_id == ("interns")
    alice = {"tenant": "globex", "user": "alice", "groups": ["interns"]}
    for i in range(5):
        assert gw.authorize(f"a{i}", alice, "anthropic", "claude-3-5-haiku", call).allowed
        gw.commit(f"a{i}", call)
    assert [v.budget_id for v in gw.status(alice)] == ["alice"]
    byok = {"tenant": "globex", "user": "bob", "tags": {"byok": "true"}}
    assert gw.authorize("b1", byok, "anthropic", "claude-3-5-haiku", call).budgets == []


@pytest.mark.parametrize("mode", ["enforce", "warn"])
def test_system5_agent_orchestrator(gov: Governor, mode: str) -> None:
    admin = remote(gov)
    admin.create_budget({"id": "all", "tenant": "orch", "meter": "tokens", "window": "day",
                         "limit": 10_000})  # fmt: skip
    admin.create_budget({"id": "agent", "tenant": "orch", "meter": "tokens", "window": "day",
                         "limit": 4_000, "per": "agent", "mode": mode})  # fmt: skip
    orch = remote(gov, "service", "orch")
    for agent, tokens in (("planner", 1000), ("coder", 3300), ("reviewer", 3850)):
        subject = {"tenant": "orch", "agent": agent}
        orch.authorize(agent, subject, "anthropic", "claude", {"output_tokens": tokens})
        orch.commit(agent, {"output_tokens": tokens})
    states = {
        a: next(v for v in orch.status({"tenant": "orch", "agent": a}) if v.budget_id == "agent")
        for a in ("planner", "coder", "reviewer")
    }
    assert {a: (v.state, v.percent) for a, v in states.items()} == {
        "planner": ("within_budget", "25.00"),
        "coder": ("approaching_limit", "82.50"),
        "reviewer": ("at_limit", "96.25"),
    }
    again = orch.authorize("again", {"tenant": "orch", "agent": "reviewer"}, "anthropic",
                           "claude", {"output_tokens": 200})  # fmt: skip
    assert again.allowed is (mode == "warn")
