"""The pure engine: which budgets apply, states, modes and refusals."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from allotment.core.budgets import PER_DIMENSIONS, Budget, Call
from allotment.core.decisions import Reason, State
from allotment.core.engine import Counter, _decide, decide, resolve
from allotment.core.subjects import Subject
from allotment.core.usage import Usage

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def budget(**spec: Any) -> Budget:
    base = {"id": "b", "tenant": "org", "meter": "cost", "window": "day", "limit": "10"}
    return Budget.from_spec(base | spec)


def call(**subject: Any) -> Call:
    return Call(Subject(**({"tenant": "org"} | subject)), "openai", "gpt-4o")


def applied_ids(budgets: list[Budget], c: Call) -> list[str]:
    return [a.budget.id for a in resolve(budgets, c, NOW)]


class TestPolicyResolution:
    """User system 2: org, group and user policies."""

    policies: ClassVar[list[Budget]] = [
        budget(id="org", per="user", limit="2.00"),
        budget(id="interns", per="user", match={"group": "interns"}, limit="0.50"),
        budget(id="eng", per="user", match={"group": "eng"}, limit="3.00"),
        budget(id="alice", per="user", match={"user": "alice"}, overrides=True, limit="5.00"),
        budget(id="org-pool", limit="100.00"),
        budget(id="org-month", per="user", window="month", limit="20.00"),
    ]

    def test_without_a_user_policy_every_level_applies(self) -> None:
        ids = applied_ids(self.policies, call(user="bob", groups=("interns", "eng")))
        assert ids == ["org", "interns", "eng", "org-pool", "org-month"]

    def test_user_policy_replaces_org_and_group_of_same_meter_window_and_per(self) -> None:
        ids = applied_ids(self.policies, call(user="alice", groups=("interns",)))
        assert ids == ["alice", "org-pool", "org-month"]

    def test_most_restrictive_binds(self) -> None:
        c = call(user="bob", groups=("interns", "eng"))
        applied = resolve(self.policies, c, NOW)
        counters = [
            Counter(used=400_000) if a.budget.id == "interns" else Counter() for a in applied
        ]
        decision, charges = decide("r", applied, counters, Usage(cost_micros=200_000))
        assert not decision.allowed and charges == ()
        assert [(r.budget_id, r.reason) for r in decision.refusals] == [
            ("interns", Reason.ESTIMATE_EXCEEDS_REMAINING)
        ]

    def test_disabled_override_does_not_override(self) -> None:
        policies = [*self.policies[:3], budget(id="alice", per="user", match={"user": "alice"},
                                               overrides=True, enabled=False)]  # fmt: skip
        assert "org" in applied_ids(policies, call(user="alice"))

    def test_own_provider_key_is_not_charged_to_org_limits(self) -> None:
        org = budget(id="org", exclude={"tags.byok": "true"})
        assert applied_ids([org], call(user="bob", tags=(("byok", "true"),))) == []
        assert applied_ids([org], call(user="bob")) == ["org"]

    def test_per_budget_skips_calls_without_that_dimension(self) -> None:
        assert applied_ids([budget(per="agent")], call(user="bob")) == []
        assert resolve([budget(per="agent")], call(agent="a1"), NOW)[0].member == "a1"

    @pytest.mark.parametrize("per", [*PER_DIMENSIONS, "tags.team"])
    def test_per_budget_member_is_the_calls_value(self, per: str) -> None:
        c = Call(
            Subject("org", user="u", key="k", agent="a", session="s", feature="f", device="d",
                    install="i", tags=(("team", "t"),)),
            "openai",
            "gpt-4o",
        )  # fmt: skip
        assert budget(per=per).member(c) == c.value(per) is not None
        expected = "org" if per == "tenant" else None  # no such dimension: not counted
        assert budget(per=per).member(Call(Subject("org"), None, None)) == expected

    def test_other_tenants_budgets_never_apply(self) -> None:
        assert applied_ids([budget(tenant="other")], call()) == []

    def test_model_globs(self) -> None:
        mini = budget(match={"model": "gpt-4o-mini*", "provider": ["openai", "azure"]})
        c = Call(Subject("org"), "azure", "gpt-4o-mini-2024-07-18")
        assert applied_ids([mini], c) == ["b"]
        assert applied_ids([mini], call()) == []


class TestStates:
    @pytest.mark.parametrize(
        ("consumed", "state"),
        [
            (0, State.WITHIN_BUDGET),
            (7_999_999, State.WITHIN_BUDGET),
            (8_000_000, State.APPROACHING_LIMIT),
            (9_499_999, State.APPROACHING_LIMIT),
            (9_500_000, State.AT_LIMIT),
            (9_999_999, State.AT_LIMIT),
            (10_000_000, State.EXCEEDED),
            (12_000_000, State.EXCEEDED),
        ],
    )
    def test_thresholds(self, consumed: int, state: State) -> None:
        assert budget().state(consumed) is state

    def test_configurable_thresholds(self) -> None:
        b = budget(soft=[50, 75], at_limit=90)
        assert b.state(5_000_000) is State.APPROACHING_LIMIT
        assert b.state(9_000_000) is State.AT_LIMIT

    def test_no_limit_is_metering_only(self) -> None:
        b = budget(limit=None)
        assert b.state(10**12) is State.WITHIN_BUDGET
        applied = resolve([b], call(), NOW)
        decision, _ = decide("r", applied, [Counter(used=10**12)], Usage(cost_micros=1))
        assert decision.allowed and decision.budgets[0].percent is None

    def test_zero_limit_refuses_everything(self) -> None:
        applied = resolve([budget(limit="0")], call(), NOW)
        decision, _ = decide("r", applied, [Counter()], Usage(cost_micros=0))
        assert decision.reason is Reason.HARD_CAP_EXCEEDED


def decide_one(b: Budget, counter: Counter, cost: int) -> Any:
    applied = resolve([b], call(), NOW)
    return decide("r", applied, [counter], Usage(cost_micros=cost))


class TestModes:
    def test_enforce_refuses_when_the_estimate_does_not_fit(self) -> None:
        decision, charges = decide_one(budget(), Counter(used=9_000_000), 2_000_000)
        assert not decision.allowed and charges == ()
        refusal = decision.refusals[0]
        assert (refusal.reason, refusal.remaining, refusal.requested) == (
            Reason.ESTIMATE_EXCEEDS_REMAINING,
            1_000_000,
            2_000_000,
        )

    def test_reserved_counts_as_consumed(self) -> None:
        decision, _ = decide_one(budget(), Counter(used=5_000_000, reserved=5_000_000), 1)
        assert decision.reason is Reason.HARD_CAP_EXCEEDED

    def test_warn_allows_with_a_warning(self) -> None:
        decision, charges = decide_one(budget(mode="warn"), Counter(used=9_000_000), 2_000_000)
        assert decision.allowed and len(charges) == 1
        assert [w.code for w in decision.warnings] == ["estimate_exceeds_remaining"]

    def test_shadow_reports_what_it_would_refuse(self) -> None:
        decision, _ = decide_one(budget(mode="shadow"), Counter(used=10_000_000), 1)
        assert decision.allowed and decision.refusals == ()
        assert [r.reason for r in decision.shadow_refusals] == [Reason.HARD_CAP_EXCEEDED]

    @pytest.mark.parametrize("spec", [{"mode": "off"}, {"enabled": False}])
    def test_off_and_disabled_only_meter(self, spec: dict[str, Any]) -> None:
        decision, charges = decide_one(budget(**spec), Counter(used=10**9), 1)
        assert decision.allowed and decision.warnings == () and decision.shadow_refusals == ()
        assert charges[0].amount == 1  # still counted

    def test_soft_threshold_warning_names_the_highest_crossed(self) -> None:
        decision, _ = decide_one(budget(soft=[50, 80]), Counter(used=7_000_000), 1_500_000)
        assert [(w.code, w.threshold) for w in decision.warnings] == [
            ("soft_threshold", Decimal(80))
        ]
        assert decision.budgets[0].reserved == 1_500_000
        assert decision.budgets[0].state is State.APPROACHING_LIMIT

    def test_refused_view_shows_the_budget_before_reserving(self) -> None:
        decision, _ = decide_one(budget(), Counter(used=9_000_000), 2_000_000)
        assert decision.budgets[0].reserved == 0
        assert decision.budgets[0].remaining == 1_000_000


def test_the_quiet_shortcut_decides_as_the_full_check_does() -> None:
    """Below every limit and first threshold ``decide`` skips the checks: same answer."""
    rng = random.Random(3)
    for i in range(3_000):
        budgets = [
            budget(
                id=f"b{j}", limit=rng.choice([None, "0", "0.000001", "1", "10", "10.000003"]),
                soft=sorted(rng.sample([1, 50, 79.99, 80, 99, 100], rng.randrange(0, 3))),
                mode=rng.choice(["enforce", "warn", "shadow", "off"]),
                enabled=rng.random() > 0.1,
            )
            for j in range(rng.randrange(1, 4))
        ]  # fmt: skip
        applied = resolve(budgets, call(), NOW)
        counters = [Counter(rng.randrange(0, 11_000_000), rng.randrange(0, 1_000_000))
                    for _ in applied]  # fmt: skip
        amounts = [rng.choice([0, 1, rng.randrange(0, 11_000_000)])] * len(applied)
        estimate = Usage(cost_micros=amounts[0])
        assert decide("r", applied, counters, estimate, NOW) == _decide(
            "r", applied, counters, amounts, NOW
        ), (i, budgets, counters, amounts)
