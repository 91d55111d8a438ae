"""User systems 1, 2 and 5 of DESIGN.md, replaced by configuration alone.

Concurrency caps and task durations of system 5 arrive with leases (another
issue); its token budgets and summary are here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from allotment.core.decisions import Reason, State
from allotment.governor import Governor
from allotment.pricing import ModelRate, StaticPricer
from allotment.store.base import EventQuery
from tests.conftest import Clock


def tok(n_in: int, n_out: int) -> dict[str, int]:
    return {"input_tokens": n_in, "output_tokens": n_out}


class TestSystem1CrmTokenBudgets:
    """Per-tenant token budgets per day/week/month, soft and hard caps."""

    @pytest.fixture
    def crm(self, gov: Governor) -> Governor:
        for port, daily in (("port-a", 10_000), ("port-b", 5_000)):
            gov.create_budget({"id": f"{port}-day", "tenant": port, "meter": "tokens",
                               "window": "day", "limit": daily, "soft": [80]})  # fmt: skip
            gov.create_budget({"id": f"{port}-week", "tenant": port, "meter": "tokens",
                               "window": "week", "limit": daily * 5})  # fmt: skip
        return gov

    def call(self, gov: Governor, rid: str, tenant: str, est: int, actual: tuple[int, int],
             feature: str = "summarize") -> Any:  # fmt: skip
        subject = {"tenant": tenant, "user": "u1", "feature": feature}
        decision = gov.authorize(rid, subject, "openai", "gpt-4o-mini", {"output_tokens": est})
        if decision.allowed:
            gov.commit(rid, tok(*actual))
        return decision

    def test_soft_cap_warns_and_hard_cap_refuses_until_rollover(
        self, crm: Governor, clock: Clock
    ) -> None:
        assert self.call(crm, "1", "port-a", 1000, (5000, 2000)).warnings == ()
        banner = self.call(crm, "2", "port-a", 1000, (500, 500))
        assert [w.code for w in banner.warnings] == ["soft_threshold"]  # 80 % with reservation
        refused = self.call(crm, "3", "port-a", 2500, (0, 0))
        assert refused.reason is Reason.ESTIMATE_EXCEEDS_REMAINING  # "estimated-exceeds-cap"
        assert self.call(crm, "4", "port-a", 1500, (1500, 500)).allowed
        capped = self.call(crm, "5", "port-a", 1, (0, 0))
        assert capped.reason is Reason.HARD_CAP_EXCEEDED  # "hard-cap-exceeded"
        assert capped.refusals[0].resets_at == datetime(2026, 11, 24, tzinfo=UTC)
        clock.now = datetime(2026, 11, 24, tzinfo=UTC)
        assert self.call(crm, "6", "port-a", 1000, (10, 10)).allowed

    def test_week_starts_monday_utc(self, crm: Governor, clock: Clock) -> None:
        crm.update_budget("port-b-day", enabled=False)
        clock.now = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)  # Sunday
        self.call(crm, "1", "port-b", 25_000, (20_000, 5_000))
        assert self.call(crm, "2", "port-b", 1, (0, 0)).reason is Reason.HARD_CAP_EXCEEDED
        clock.now = datetime(2026, 11, 30, tzinfo=UTC)  # Monday 00:00
        assert self.call(crm, "3", "port-b", 1, (1, 0)).allowed

    def test_disabled_budget_has_no_caps_but_records(self, crm: Governor) -> None:
        crm.update_budget("port-b-day", enabled=False)
        crm.update_budget("port-b-week", enabled=False)
        assert self.call(crm, "1", "port-b", 50_000, (40_000, 30_000)).allowed
        view = next(v for v in crm.status({"tenant": "port-b"}) if v.budget_id == "port-b-day")
        assert (view.used, view.state) == (70_000, State.EXCEEDED)

    def test_ledger_and_per_feature_usage_for_admins(self, crm: Governor) -> None:
        self.call(crm, "a", "port-a", 100, (10, 20), feature="summarize")
        self.call(crm, "b", "port-a", 100, (1, 2), feature="draft-reply")
        self.call(crm, "c", "port-a", 100, (3, 4), feature="draft-reply")
        self.call(crm, "d", "port-b", 100, (1000, 1000), feature="draft-reply")
        event = crm.events(EventQuery(tenant="port-a"))[0]
        assert (event.subject.tenant, event.subject.user, event.subject.feature) == (
            "port-a", "u1", "summarize",
        )  # fmt: skip
        assert (event.provider, event.model, event.request_id) == ("openai", "gpt-4o-mini", "a")
        assert (event.usage.input_tokens, event.usage.output_tokens, event.usage.tokens) == (
            10, 20, 30,
        )  # fmt: skip
        day_start = datetime(2026, 11, 23, tzinfo=UTC)
        rows = {
            r.group["feature"]: (r.calls, r.totals["input_tokens"] + r.totals["output_tokens"])
            for r in crm.usage("port-a", by=["feature"], since=day_start)
        }
        assert rows == {"summarize": (1, 30), "draft-reply": (2, 10)}

    def test_tenants_never_see_each_other(self, crm: Governor) -> None:
        self.call(crm, "a", "port-a", 100, (10, 20))
        assert {v.budget_id for v in crm.status({"tenant": "port-b"})} == {
            "port-b-day",
            "port-b-week",
        }
        assert crm.usage("port-b") == []
        assert crm.events(EventQuery(tenant="port-b")) == []


EUR_RATES = {
    "gpt-4o-mini": ModelRate(input=Decimal("0.15"), output=Decimal("0.60")),
    "claude-3-5-haiku": ModelRate(input=Decimal("0.80"), output=Decimal("4.00")),
}


class TestSystem2GatewayCostPolicies:
    """Money limits (micro-EUR) at org, group and user level; BYOK not charged."""

    @pytest.fixture
    def gw(self, make_governor: Any) -> Governor:
        gov: Governor = make_governor(currency="EUR", pricer=StaticPricer(EUR_RATES, "EUR"))
        common = {"tenant": "globex", "meter": "cost", "per": "user", "currency": "EUR",
                  "exclude": {"tags.byok": "true"}}  # fmt: skip
        for spec in (
            {"id": "org-day", "window": "day", "limit": "1.00"},
            {"id": "org-month", "window": "month", "limit": "10.00"},
            {"id": "interns-day", "window": "day", "limit": "0.20", "match": {"group": "interns"}},
            {"id": "alice-day", "window": "day", "limit": "3.00", "match": {"user": "alice"},
             "overrides": True},
        ):  # fmt: skip
            gov.create_budget(common | spec)
        return gov

    def spend(self, gov: Governor, rid: str, user: str, groups: list[str], out_tokens: int,
              byok: bool = False) -> Any:  # fmt: skip
        subject: dict[str, Any] = {"tenant": "globex", "user": user, "groups": groups,
                                   "key": "sk-…a1b2" if byok else "org-key"}  # fmt: skip
        if byok:
            subject["tags"] = {"byok": "true"}
        est = tok(1000, out_tokens)
        decision = gov.authorize(rid, subject, "anthropic", "claude-3-5-haiku", est)
        if decision.allowed:
            gov.commit(rid, est)
        return decision

    def test_micro_eur_pricing_and_status_for_today_and_month(self, gw: Governor) -> None:
        self.spend(gw, "1", "bob", [], 100_000)  # 0.0008 + 0.40 = 0.4008 EUR
        views = {v.budget_id: v for v in gw.status({"tenant": "globex", "user": "bob"})}
        assert set(views) == {"org-day", "org-month"}
        assert (views["org-day"].used, views["org-day"].limit, views["org-day"].remaining) == (
            400_800, 1_000_000, 599_200,
        )  # fmt: skip
        assert views["org-month"].used == 400_800
        assert gw.events()[0].price["source"] == "override"

    def test_most_restrictive_of_org_and_groups(self, gw: Governor) -> None:
        decision = self.spend(gw, "1", "ivan", ["interns"], 100_000)
        assert decision.reason is Reason.ESTIMATE_EXCEEDS_REMAINING
        assert decision.refusals[0].budget_id == "interns-day"

    def test_user_policy_overrides_org_and_group(self, gw: Governor) -> None:
        for i in range(5):  # 5 x 0.4008 = 2.004 EUR, above org-day and interns-day
            assert self.spend(gw, str(i), "alice", ["interns"], 100_000).allowed
        views = {v.budget_id for v in gw.status({"tenant": "globex", "user": "alice",
                                                 "groups": ["interns"]})}  # fmt: skip
        assert views == {"alice-day", "org-month"}

    def test_warn_threshold_default_80(self, gw: Governor) -> None:
        self.spend(gw, "1", "bob", [], 100_000)
        decision = self.spend(gw, "2", "bob", [], 100_000)
        assert [(w.budget_id, w.code) for w in decision.warnings] == [("org-day", "soft_threshold")]

    def test_own_provider_key_is_not_charged_to_org_limits(self, gw: Governor) -> None:
        for i in range(4):
            assert self.spend(gw, str(i), "bob", [], 100_000, byok=True).allowed
        assert gw.status({"tenant": "globex", "user": "bob"})[0].used == 0
        by_key = {r.group["key"]: r.totals["cost_micros"] for r in gw.usage("globex", by="key")}
        assert by_key == {"sk-…a1b2": 4 * 400_800}

    def test_policies_warn_together_against_the_binding_limit(self, gov: Governor) -> None:
        """System 2: the smallest warn threshold of the applicable policies, measured
        against the most restrictive limit. Org 10 at 50 %, group 5 at 90 %, a user
        at 3: 3/5 = 60 % >= 50 %, so a warning, on the group's budget."""
        common = {"tenant": "globex", "meter": "cost", "per": "user", "window": "day",
                  "policy": "spend"}  # fmt: skip
        gov.create_budget(common | {"id": "org", "limit": "10", "soft": [50]})
        gov.create_budget(common | {"id": "eng", "limit": "5", "soft": [90],
                                    "match": {"group": "eng"}})  # fmt: skip
        dana = {"tenant": "globex", "user": "dana", "groups": ["eng"]}
        gov.record("r0", dana, "openai", "m", {"cost": "2.00"})
        quiet = gov.authorize("r1", dana, "openai", "m", {"cost": "0.40"})
        assert quiet.warnings == ()  # 2.40 / 5 = 48 %
        decision = gov.authorize("r2", dana, "openai", "m", {"cost": "0.60"})
        assert [(w.budget_id, w.code, w.percent, w.threshold) for w in decision.warnings] == [
            ("eng", "soft_threshold", Decimal("60.00"), Decimal("50"))
        ]
        # Budgets outside the policy keep their own thresholds.
        gov.update_budget("eng", policy=None)
        again = gov.authorize("r3", dana, "openai", "m", {"cost": "0.01"})
        assert again.warnings == ()  # 60.2 % of eng < 90 %, 30.1 % of org < 50 %

    def test_the_org_policy_is_protected(self, gov: Governor) -> None:
        """System 2's org policy cannot be deleted until it is explicitly unprotected."""
        from allotment.errors import ValidationError

        gov.create_budget({"id": "org", "tenant": "globex", "meter": "cost", "window": "day",
                           "limit": "10", "protected": True})  # fmt: skip
        with pytest.raises(ValidationError) as info:
            gov.delete_budget("org")
        assert info.value.field == "protected"
        gov.update_budget("org", protected=False)
        gov.delete_budget("org")
        assert gov.list_budgets("globex") == []


class TestSystem5AgentOrchestrator:
    """Daily tokens across agents, per agent; summary with states and breakdown."""

    @pytest.fixture
    def orch(self, gov: Governor) -> Governor:
        gov.create_budget({"id": "all-agents", "tenant": "orch", "meter": "tokens",
                           "window": "day", "limit": 10_000})  # fmt: skip
        gov.create_budget({"id": "per-agent", "tenant": "orch", "meter": "tokens",
                           "window": "day", "limit": 4_000, "per": "agent"})  # fmt: skip
        return gov

    def run(self, gov: Governor, rid: str, agent: str, n: int) -> Any:
        subject = {"tenant": "orch", "agent": agent}
        decision = gov.authorize(
            rid, subject, "anthropic", "claude-sonnet-4", tok(n // 2, n - n // 2)
        )
        if decision.allowed:
            gov.commit(rid, tok(n // 2, n - n // 2))
        return decision

    def test_summary_states_and_per_agent_breakdown(self, orch: Governor) -> None:
        self.run(orch, "1", "planner", 1000)  # 25 %
        self.run(orch, "2", "coder", 3300)  # 82.5 %
        self.run(orch, "3", "reviewer", 3850)  # 96.25 %
        states = {
            v.member: (v.state, v.percent)
            for v in (orch.status({"tenant": "orch", "agent": a})[1]
                      for a in ("planner", "coder", "reviewer"))
        }  # fmt: skip
        assert states == {
            "planner": (State.WITHIN_BUDGET, Decimal("25.00")),
            "coder": (State.APPROACHING_LIMIT, Decimal("82.50")),
            "reviewer": (State.AT_LIMIT, Decimal("96.25")),
        }
        refused = self.run(orch, "4", "reviewer", 200)
        assert refused.refusals[0].budget_id == "per-agent"
        breakdown = {r.group["agent"]: r.totals["input_tokens"] + r.totals["output_tokens"]
                     for r in orch.usage("orch", by=["agent"])}  # fmt: skip
        assert breakdown == {"planner": 1000, "coder": 3300, "reviewer": 3850}

    def test_daily_limit_across_all_agents(self, orch: Governor) -> None:
        for i, agent in enumerate(["a", "b", "c"]):
            assert self.run(orch, str(i), agent, 3000).allowed
        decision = self.run(orch, "x", "d", 1500)
        assert decision.refusals[0].budget_id == "all-agents"
        pooled = orch.status({"tenant": "orch"})[0]
        assert (pooled.state, pooled.percent) == (State.APPROACHING_LIMIT, Decimal("90.00"))

    def test_soft_enforcement_allows_and_flags(self, orch: Governor) -> None:
        orch.update_budget("per-agent", mode="warn")
        self.run(orch, "1", "coder", 3900)
        decision = self.run(orch, "2", "coder", 500)
        assert decision.allowed
        assert [w.code for w in decision.warnings] == ["estimate_exceeds_remaining"]
        coder = orch.status({"tenant": "orch", "agent": "coder"})[1]
        assert coder.state is State.EXCEEDED
