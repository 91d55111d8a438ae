"""User system 4's tiers (issue 18): ``core`` 100 credits for life, ``pro`` 1,000 a
month, ``max`` unlimited, per install; tier changes mid-month; months roll over lazily.

Through the library on every store.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from allotment.core.decisions import Reason
from allotment.errors import ConflictError, NotFoundError, ValidationError
from allotment.governor import Governor
from allotment.store.base import EventQuery
from tests.conftest import Clock

INSTALL = {"tenant": "relay", "install": "i-1"}
ONE = {"credits": 1}
TIERS = [
    {"id": "core", "tenant": "relay", "per": "install", "default": True,
     "budgets": [{"id": "credits", "meter": "credits", "window": "lifetime", "limit": 100}]},
    {"id": "pro", "tenant": "relay", "per": "install",
     "budgets": [{"id": "credits", "meter": "credits", "window": "month", "limit": 1000}]},
    {"id": "max", "tenant": "relay", "per": "install",
     "budgets": [{"id": "credits", "meter": "credits", "window": "month"}]},
]  # fmt: skip


@pytest.fixture
def relay(gov: Governor, clock: Clock) -> Governor:
    clock.now = datetime(2026, 11, 10, 12, tzinfo=UTC)
    for spec in TIERS:
        gov.set_plan(spec)
    return gov


def calls(gov: Governor, n: int, prefix: str, subject: dict[str, str] = INSTALL) -> int:
    """Plan, call, then commit on success (system 4's flow), ``n`` times; how many ran."""
    ran = 0
    for i in range(n):
        decision = gov.authorize(f"{prefix}-{i}", subject, "hosted", "relay-model", ONE)
        if decision.allowed:
            gov.commit(f"{prefix}-{i}", ONE)
            ran += 1
    return ran


def standing(gov: Governor, subject: dict[str, str] = INSTALL) -> tuple[str, int, int | None]:
    [view] = gov.status(subject)
    return view.budget_id, view.used, view.remaining


def test_core_is_a_lifetime_quota_that_never_resets(relay: Governor, clock: Clock) -> None:
    assert calls(relay, 101, "a") == 100
    refused = relay.authorize("b", INSTALL, "hosted", "relay-model", ONE)
    assert refused.reason is Reason.HARD_CAP_EXCEEDED
    assert refused.refusals[0].budget_id == "core.credits"
    clock.now = datetime(2027, 3, 1, tzinfo=UTC)  # months later: still spent
    assert standing(relay) == ("core.credits", 100, 0)


def test_a_tier_change_mid_month_and_months_that_roll_over_lazily(
    relay: Governor, clock: Clock
) -> None:
    assert calls(relay, 30, "core") == 30
    assignment = relay.assign_plan("relay", "i-1", "pro")  # takes effect on the next request
    assert (assignment.plan, assignment.epoch) == ("pro", 0)
    assert standing(relay) == ("pro.credits", 0, 1000)
    assert calls(relay, 1001, "pro") == 1000
    assert standing(relay) == ("pro.credits", 1000, 0)
    clock.now = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)  # no job ran: the month rolled
    assert standing(relay) == ("pro.credits", 0, 1000)
    relay.assign_plan("relay", "i-1", "max")
    assert calls(relay, 5, "max") == 5
    assert standing(relay) == ("max.credits", 5, None)  # unlimited: remaining null
    relay.assign_plan("relay", "i-1", "core")  # back to core: its lifetime quota survived
    assert standing(relay) == ("core.credits", 30, 70)
    plans = [e.subject.tag("plan") for e in relay.events(EventQuery(tenant="relay", limit=2000))]
    assert {p: plans.count(p) for p in set(plans)} == {"core": 30, "pro": 1001, "max": 5}


def test_carry_keeps_a_shared_slot_and_reset_starts_afresh(relay: Governor) -> None:
    relay.set_plan({"id": "team", "tenant": "relay", "per": "install", "budgets": [
        {"id": "credits", "meter": "credits", "window": "month", "limit": 2000}]})  # fmt: skip
    relay.assign_plan("relay", "i-1", "pro")
    assert calls(relay, 400, "pro") == 400
    relay.assign_plan("relay", "i-1", "team")  # carry (the default): the month's 400 stay
    assert standing(relay) == ("team.credits", 400, 1600)
    reset = relay.assign_plan("relay", "i-1", "pro", usage="reset")
    assert reset.epoch == 1
    assert standing(relay) == ("pro.credits", 0, 1000)
    live = relay.store.counters()
    relay.rebuild()
    assert relay.store.counters() == live


def test_a_call_in_flight_commits_under_the_plan_it_was_allowed_on(relay: Governor) -> None:
    assert relay.authorize("r", INSTALL, "hosted", "relay-model", {"credits": 5}).allowed
    relay.assign_plan("relay", "i-1", "pro")
    relay.commit("r", {"credits": 5})
    assert standing(relay) == ("pro.credits", 0, 1000)
    relay.assign_plan("relay", "i-1", "core")
    assert standing(relay) == ("core.credits", 5, 95)


def test_installs_are_counted_apart_and_make_no_budget_rows(relay: Governor) -> None:
    for i in range(20):
        assert calls(relay, 1, f"i{i}", {"tenant": "relay", "install": f"i-{i}"}) == 1
    assert relay.list_budgets("relay") == []  # plans are templates, not budget rows
    assert standing(relay, {"tenant": "relay", "install": "i-7"}) == ("core.credits", 1, 99)


def test_plans_are_versioned_validated_and_assigned_only_to_existing_plans(
    relay: Governor,
) -> None:
    changed = relay.set_plan({**TIERS[1], "budgets": [
        {"id": "credits", "meter": "credits", "window": "month", "limit": 1500}]})  # fmt: skip
    assert changed.version == 2 and relay.get_plan("pro", tenant="relay").version == 2
    with pytest.raises(NotFoundError):
        relay.assign_plan("relay", "i-1", "gold")
    with pytest.raises(ValidationError) as second_default:
        relay.set_plan({**TIERS[1], "id": "free", "default": True})
    assert second_default.value.field == "default"
    with pytest.raises(ValidationError) as other_dimension:
        relay.set_plan({**TIERS[1], "id": "team", "per": "user"})
    assert other_dimension.value.field == "per"
    with pytest.raises(ValidationError) as set_by_plan:
        relay.set_plan({**TIERS[1], "budgets": [{**TIERS[1]["budgets"][0], "per": "user"}]})
    assert set_by_plan.value.field == "budgets[0].per"
    relay.create_budget({"id": "extra.credits", "tenant": "relay", "meter": "credits",
                         "window": "day", "limit": 5})  # fmt: skip
    with pytest.raises(ConflictError):
        relay.set_plan({**TIERS[1], "id": "extra"})


def test_a_subject_may_name_its_plan_only_where_callers_are_trusted(
    make_governor: Callable[..., Governor],
) -> None:
    strict = make_governor()
    for spec in TIERS:
        strict.set_plan(spec)
    tagged = {**INSTALL, "tags": {"plan": "max"}}
    assert standing(strict, tagged)[0] == "core.credits"  # the tag is ignored: the default
    trusting = make_governor(plan_from_subject=True)
    assert standing(trusting, tagged)[0] == "max.credits"


def test_grants_layer_on_a_plan(gov: Governor) -> None:
    """Credits bought on top of a tier: the plan's budget is a credit pool."""
    gov.set_plan({"id": "core", "tenant": "relay", "per": "install", "default": True,
                  "budgets": [{"id": "credits", "meter": "credits", "window": "lifetime",
                               "limit": 100, "credits": True}]})  # fmt: skip
    gov.add_grant("core.credits", 20, tenant="relay", member="i-1", idempotency_key="pay_1")
    assert calls(gov, 130, "a") == 120  # the lifetime 100, then the 20 bought
    assert gov.pool("core.credits", tenant="relay", member="i-1").available == 0
    assert calls(gov, 1, "b", {"tenant": "relay", "install": "i-2"}) == 1  # its own quota


def test_a_plan_may_give_recurring_grants(gov: Governor, clock: Clock) -> None:
    credits = {
        "id": "credits",
        "meter": "credits",
        "window": "month",
        "limit": 1000,
        "credits": True,
        "recurring_grants": [{"amount": 100, "every": "month"}],
    }
    gov.set_plan({"id": "pro", "tenant": "relay", "per": "install", "default": True,
                  "budgets": [credits]})  # fmt: skip
    assert calls(gov, 1101, "a") == 1100  # the month's 1,000, then its 100 bonus credits


#: core with a hosted sub-cap: at most half its lifetime quota served by the hosted backend
SUBCAPPED = {**TIERS[0], "budgets": [
    {"id": "credits", "meter": "credits", "window": "lifetime", "limit": 100},
    {"id": "hosted", "meter": "credits", "window": "lifetime", "share": "0.5",
     "match": {"backend": "hosted"}},
]}  # fmt: skip
HOSTED = {"provider": "hosted", "model": "relay-model", "backend": "hosted"}
OWN = {"provider": "self", "model": "relay-local", "backend": "own"}


def routed(gov: Governor, request_id: str, routes: list[dict[str, str]]) -> object:
    """Plan (authorize over the routes), call, then commit one credit on success."""
    decision = gov.authorize(request_id, INSTALL, "hosted", "relay-model", ONE, routes=routes)
    if decision.allowed:
        gov.commit(request_id, ONE)
    return decision


def test_the_hosted_sub_cap_falls_back_to_own_hardware(gov: Governor) -> None:
    plan = gov.set_plan(SUBCAPPED)
    assert plan.budgets[1].limit == 50  # half of the plan's 100 credits
    assert gov.get_plan("core", tenant="relay").to_spec()["budgets"][1]["share"] == "0.5"
    served = [routed(gov, f"c{i}", [HOSTED, OWN]).route.backend for i in range(100)]
    assert served == ["hosted"] * 50 + ["own"] * 50  # the 51st falls back to hardware
    refused = routed(gov, "c100", [HOSTED, OWN])
    assert not refused.allowed  # 100 lifetime credits: no route left
    assert {r.budget_id for s in refused.skipped for r in s.refusals} == {
        "core.credits", "core.hosted",
    }  # fmt: skip
    used = {v.budget_id: v.used for v in gov.status(INSTALL | {"tags": {"backend": "hosted"}})}
    assert used == {"core.credits": 100, "core.hosted": 50}


def test_without_hardware_the_51st_call_is_refused_naming_the_sub_cap(gov: Governor) -> None:
    gov.set_plan(SUBCAPPED)
    assert all(routed(gov, f"c{i}", [HOSTED]).allowed for i in range(50))
    refused = routed(gov, "c50", [HOSTED])
    assert refused.reason is Reason.HARD_CAP_EXCEEDED
    assert [r.budget_id for r in refused.refusals] == ["core.hosted"]
    assert [s.route.backend for s in refused.skipped] == ["hosted"]


def test_planning_does_not_debit_and_commit_debits_on_success_only(gov: Governor) -> None:
    gov.set_plan(SUBCAPPED)
    held = gov.authorize("ok", INSTALL, "hosted", "relay-model", ONE, routes=[HOSTED, OWN])
    [credits, hosted] = [v for v in held.budgets]
    assert (credits.used, credits.reserved, hosted.used) == (0, 1, 0)  # planned, not debited
    gov.commit("ok", ONE)
    gov.authorize("failed", INSTALL, "hosted", "relay-model", ONE, routes=[HOSTED, OWN])
    gov.commit("failed", {"credits": 0}, status="error", reason="upstream 500")
    used = {v.budget_id: (v.used, v.reserved)
            for v in gov.status(INSTALL | {"tags": {"backend": "hosted"}})}  # fmt: skip
    assert used == {"core.credits": (1, 0), "core.hosted": (1, 0)}


def test_a_share_needs_one_quota_to_share(gov: Governor) -> None:
    lone = {**SUBCAPPED, "budgets": [SUBCAPPED["budgets"][1]]}  # type: ignore[index]
    with pytest.raises(ValidationError) as caught:
        gov.set_plan(lone)
    assert caught.value.field == "budgets[0].share"
    both = {
        **SUBCAPPED,
        "budgets": [
            SUBCAPPED["budgets"][0],  # type: ignore[index]
            {**SUBCAPPED["budgets"][1], "limit": 10},
        ],
    }  # type: ignore[index]
    with pytest.raises(ValidationError):
        gov.set_plan(both)
