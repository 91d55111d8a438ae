"""Leases (issue 19): concurrency budgets, heartbeats, maximum durations, lazy reclaim.

On every backend: a slot per lease in flight, never a count to leak; a heartbeat
extends a live lease up to its maximum and never revives an expired one; an
expired lease is reclaimed (ledger reason ``lease_expired``) by the sweep or by
the authorize that needs its slot; a refusal says when the soonest slot frees up.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from allotment.core.decisions import Reason
from allotment.core.ledger import ReservationState
from allotment.errors import NotFoundError, ValidationError
from allotment.governor import Governor
from allotment.store.base import EventQuery
from tests.conftest import Clock

ACME = {"tenant": "acme", "agent": "a1"}
RUN = {"input_tokens": 100}


def slots(gov: Governor, limit: int = 2, **extra: Any) -> None:
    gov.create_budget({"id": "agents", "tenant": "acme", "meter": "concurrency",
                       "window": "lifetime", "limit": limit, **extra})  # fmt: skip


def held(gov: Governor, budget: str = "agents", subject: dict[str, str] = ACME) -> int:
    [view] = [v for v in gov.status(subject) if v.budget_id == budget]
    assert view.used == 0 or view.meter != "concurrency"  # leases never use slots
    return view.reserved


def reasons(gov: Governor) -> list[tuple[str, str | None]]:
    return [(e.request_id, e.reason) for e in gov.events(EventQuery(tenant="acme"))
            if e.status == "released"]  # fmt: skip


def test_a_concurrency_budget_holds_one_slot_per_lease(gov: Governor, clock: Clock) -> None:
    slots(gov)
    assert gov.authorize("l1", ACME, "openai", "m", RUN, ttl=60).allowed
    clock.advance(seconds=10)
    assert gov.authorize("l2", ACME, "openai", "m", RUN, ttl=60).allowed
    assert held(gov) == 2
    refused = gov.authorize("l3", ACME, "openai", "m", RUN, ttl=60)
    assert refused.reason is Reason.CONCURRENCY_LIMITED
    # The soonest lease to end is l1's, 60 s after it began: not a guess.
    assert refused.retry_at == clock.now + timedelta(seconds=50)
    assert refused.refusals[0].retry_at == refused.retry_at
    # Commit and release give their slot back; a call's usage takes none.
    gov.commit("l1", RUN)
    assert held(gov) == 1
    assert gov.authorize("l3", ACME, "openai", "m", RUN, ttl=60).allowed
    gov.release("l2")
    gov.release("l2")  # twice: changes nothing, never below zero
    assert held(gov) == 1


def test_an_expired_lease_is_reclaimed_by_the_call_that_needs_its_slot(
    gov: Governor, clock: Clock
) -> None:
    slots(gov, limit=1)
    assert gov.authorize("dead", ACME, "openai", "m", RUN, ttl=30).allowed
    clock.advance(seconds=29)
    assert gov.authorize("next", ACME, "openai", "m", RUN, ttl=30).reason is (
        Reason.CONCURRENCY_LIMITED
    )
    clock.advance(seconds=1)  # the dead client's TTL is over: its slot comes back
    assert gov.authorize("next", ACME, "openai", "m", RUN, ttl=30).allowed
    assert held(gov) == 1
    assert reasons(gov) == [("dead", "lease_expired")]
    # A late commit of the reclaimed lease counts its usage, and frees no slot twice.
    late = gov.commit("dead", RUN)
    assert late.late
    assert held(gov) == 1


def test_the_sweep_writes_expired_leases_to_the_ledger(gov: Governor, clock: Clock) -> None:
    gov.create_budget({"id": "tokens", "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": 1000, "match": {"feature": "chat"}})  # fmt: skip
    chat = {"tenant": "acme", "feature": "chat"}
    slots(gov, match={"feature": "agents"})  # no slot for chat: not a lease
    gov.authorize("l1", ACME | {"feature": "agents"}, "openai", "m", RUN, ttl=30)
    gov.authorize("plain", chat, "openai", "m", RUN, ttl=30)
    clock.advance(seconds=31)
    assert gov.sweep() == 2
    assert sorted(reasons(gov)) == [("l1", "lease_expired"), ("plain", "expired")]
    assert held(gov, subject=ACME | {"feature": "agents"}) == 0


def test_a_heartbeat_extends_a_lease_up_to_its_maximum_duration(
    gov: Governor, clock: Clock
) -> None:
    slots(gov, limit=1)
    start = clock.now
    gov.authorize("run", ACME, "openai", "m", RUN, ttl=60, max_duration=170)
    for _ in range(2):
        clock.advance(seconds=50)
        beat = gov.heartbeat("run")
        assert (beat.alive, beat.stop, beat.expires_at) == (
            True,
            False,
            clock.now + timedelta(seconds=60),
        )
        assert beat.max_until == start + timedelta(seconds=170)
        # Alive past its first TTL: nobody takes its slot.
        assert not gov.authorize(f"other{_}", ACME, "openai", "m", RUN).allowed
    clock.advance(seconds=40)  # 140 s: the extension stops at the maximum
    assert gov.heartbeat("run").expires_at == start + timedelta(seconds=170)
    clock.advance(seconds=30)
    beat = gov.heartbeat("run")
    assert (beat.alive, beat.stop, beat.reason) == (False, True, "max_duration")
    assert held(gov) == 0
    assert reasons(gov)[-1] == ("run", "lease_expired")


def test_a_heartbeat_never_revives_an_expired_lease(gov: Governor, clock: Clock) -> None:
    slots(gov, limit=1)
    gov.authorize("run", ACME, "openai", "m", RUN, ttl=60)
    clock.advance(seconds=60)
    beat = gov.heartbeat("run")
    assert (beat.alive, beat.stop, beat.reason) == (False, True, "expired")
    assert held(gov) == 0
    assert gov.heartbeat("run").reason == "released"  # stays ended
    assert gov.authorize("next", ACME, "openai", "m", RUN).allowed


def test_a_heartbeat_tells_a_revoked_or_finished_lease_to_stop(gov: Governor) -> None:
    slots(gov)
    gov.authorize("revoked", ACME, "openai", "m", RUN)
    gov.authorize("done", ACME, "openai", "m", RUN)
    gov.release("revoked", "revoked")  # an operator's release
    gov.commit("done", RUN)
    assert (gov.heartbeat("revoked").stop, gov.heartbeat("revoked").reason) == (True, "released")
    assert (gov.heartbeat("done").stop, gov.heartbeat("done").reason) == (True, "committed")
    with pytest.raises(NotFoundError):
        gov.heartbeat("nobody")


def test_a_heartbeat_answers_the_budgets_the_lease_counts_on(gov: Governor) -> None:
    slots(gov)
    gov.create_budget({"id": "tokens", "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": 1000, "per": "agent"})  # fmt: skip
    # One authorize starts an agent run: a slot and its token estimate.
    assert gov.authorize("run", ACME, "openai", "m", RUN).allowed
    views = {v.budget_id: v for v in gov.heartbeat("run").budgets}
    assert (views["agents"].reserved, views["tokens"].reserved) == (1, 100)
    gov.commit("run", {"input_tokens": 40})
    assert held(gov) == 0
    assert held(gov, "tokens") == 0
    [tokens] = [v for v in gov.status(ACME) if v.budget_id == "tokens"]
    assert tokens.used == 40


def test_slots_per_agent_and_for_the_tenant(gov: Governor) -> None:
    slots(gov, limit=3)
    slots_per_agent = {"id": "per-agent", "tenant": "acme", "meter": "concurrency",
                       "window": "lifetime", "limit": 1, "per": "agent"}  # fmt: skip
    gov.create_budget(slots_per_agent)
    assert gov.authorize("a1", ACME, "openai", "m", RUN).allowed
    refused = gov.authorize("a1-again", ACME, "openai", "m", RUN)
    assert [r.budget_id for r in refused.refusals] == ["per-agent"]
    for agent in ("a2", "a3"):
        assert gov.authorize(agent, {"tenant": "acme", "agent": agent}, "openai", "m", RUN).allowed
    refused = gov.authorize("a4", {"tenant": "acme", "agent": "a4"}, "openai", "m", RUN)
    assert [r.budget_id for r in refused.refusals] == ["agents"]


def test_a_call_no_slot_can_ever_hold_is_not_told_to_retry(gov: Governor) -> None:
    slots(gov, limit=0)
    refused = gov.authorize("r", ACME, "openai", "m", RUN)
    assert refused.reason is Reason.ESTIMATE_EXCEEDS_LIMIT
    assert refused.retry_at is None


def test_a_concurrency_budget_counts_leases_now() -> None:
    gov = Governor("memory://")
    with pytest.raises(ValidationError) as caught:
        slots(gov, window="day")
    assert caught.value.field == "window"


def test_a_lease_survives_a_reopened_store(make_governor: Any, clock: Clock) -> None:
    first = make_governor()
    slots(first, limit=1)
    first.authorize("run", ACME, "openai", "m", RUN, ttl=60, max_duration=90)
    second = make_governor()
    clock.advance(seconds=50)
    beat = second.heartbeat("run")
    assert beat.alive and beat.max_until == clock.now + timedelta(seconds=40)
    assert second.release("run") is ReservationState.RELEASED
    assert held(second) == 0


def test_a_deployment_wide_cap_counts_every_tenants_leases(gov: Governor, clock: Clock) -> None:
    gov.create_budget({"id": "fleet", "meter": "concurrency", "window": "lifetime", "limit": 2})
    assert gov.authorize("a", ACME, "openai", "m", RUN, ttl=60).allowed
    other = {"tenant": "globex", "agent": "b1"}
    assert gov.authorize("b", other, "openai", "m", RUN, ttl=60).allowed
    refused = gov.authorize("c", {"tenant": "initech"}, "openai", "m", RUN, ttl=60)
    assert (refused.reason, refused.retry_at) == (
        Reason.CONCURRENCY_LIMITED, clock.now + timedelta(seconds=60),
    )  # fmt: skip
    clock.advance(seconds=60)  # acme's and globex's holders died: both reclaimed
    assert gov.authorize("c", {"tenant": "initech"}, "openai", "m", RUN, ttl=60).allowed
    assert reasons(gov) == [("a", "lease_expired")]  # (the ledger read is acme's)
