"""Credit pools (issue 18): a period budget's allowance first, then grants in burn order.

On every backend: the split an authorize holds, what commit keeps and gives
back, debt and its repayment, expiry and voids, and the credit ledger with
the balance after each entry.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest

from allotment.core.credits import EntryKind, debt_key, grant_key
from allotment.core.decisions import Reason
from allotment.errors import ConflictError, ValidationError
from allotment.governor import Governor
from allotment.store.base import EventQuery
from tests.conftest import Clock

ACME = {"tenant": "acme", "user": "u1"}


def pool(gov: Governor, limit: int = 100, **extra: Any) -> None:
    gov.create_budget({"id": "plan", "tenant": "acme", "meter": "tokens", "window": "month",
                       "limit": limit, "credits": True, **extra})  # fmt: skip


def tokens(n: int) -> dict[str, int]:
    return {"input_tokens": n}


def balances(gov: Governor) -> dict[str, tuple[int, int, int]]:
    """Each grant's (used, reserved, available)."""
    return {g.grant.id: (g.used, g.reserved, g.available) for g in gov.pool("plan").grants}


def ledger(gov: Governor) -> list[tuple[str, str | None, int, int]]:
    return [(e.kind.value, e.grant_id, e.amount, e.balance) for e in gov.credit_ledger("plan")]


def test_the_allowance_goes_first_then_grants_in_burn_order(gov: Governor, clock: Clock) -> None:
    pool(gov)
    later = clock.now + timedelta(days=30)
    gov.add_grant("plan", 50, grant_id="paid")
    gov.add_grant("plan", 50, grant_id="promo", kind="promotional")
    gov.add_grant("plan", 50, grant_id="soon", expires_at=later)
    gov.add_grant("plan", 50, grant_id="first", priority=-1)
    # first (priority) -> soon (expires) -> promo (promotional before paid) -> paid
    decision = gov.authorize("r1", ACME, "openai", "m", tokens(260))
    assert decision.allowed
    [view] = decision.budgets
    assert (view.used, view.reserved, view.limit) == (0, 100, 100)
    assert view.credit is not None
    assert view.credit.drawn == (("first", 50), ("soon", 50), ("promo", 50), ("paid", 10))
    assert view.credit.available == 40
    assert balances(gov)["paid"] == (0, 10, 40)


def test_a_call_neither_allowance_nor_grants_cover_is_refused(gov: Governor) -> None:
    pool(gov, limit=10)
    gov.add_grant("plan", 5, grant_id="g")
    refused = gov.authorize("r1", ACME, "openai", "m", tokens(16))
    assert not refused.allowed
    [refusal] = refused.refusals
    assert (refusal.budget_id, refusal.reason) == ("plan", Reason.CREDITS_EXHAUSTED)
    assert (refusal.requested, refusal.remaining) == (16, 15)
    assert refused.budgets[0].credit is not None and refused.budgets[0].credit.available == 5
    assert gov.authorize("r2", ACME, "openai", "m", tokens(15)).allowed
    assert balances(gov) == {"g": (0, 5, 0)}


def test_commit_keeps_what_was_used_and_refunds_the_last_drawn_first(gov: Governor) -> None:
    pool(gov, limit=10)
    gov.add_grant("plan", 20, grant_id="a", priority=1)
    gov.add_grant("plan", 20, grant_id="b", priority=2)
    assert gov.authorize("r1", ACME, "openai", "m", tokens(40)).allowed  # 10 + a 20 + b 10
    gov.commit("r1", tokens(25))  # keeps 10 of the allowance, 15 of a
    assert balances(gov) == {"a": (15, 0, 5), "b": (0, 0, 20)}
    [view] = gov.status(ACME)
    assert (view.used, view.reserved) == (10, 0)
    assert ledger(gov)[-2:] == [("refund", "b", 10, 20), ("refund", "a", 5, 25)]


def test_commit_draws_further_then_runs_into_debt_that_the_next_grant_repays(
    gov: Governor,
) -> None:
    pool(gov, limit=10)
    gov.add_grant("plan", 20, grant_id="a")
    assert gov.authorize("r1", ACME, "openai", "m", tokens(5)).allowed  # the allowance only
    gov.commit("r1", tokens(45))  # 10 allowance + 20 of a + 15 debt
    status = gov.pool("plan")
    assert (status.available, status.debt) == (0, 15)
    assert ledger(gov)[-2:] == [("debit", "a", 20, 0), ("debt", None, 15, -15)]
    refused = gov.authorize("r2", ACME, "openai", "m", tokens(1))
    assert not refused.allowed
    gov.add_grant("plan", 40, grant_id="b")
    assert ledger(gov)[-2:] == [("grant", "b", 40, 25), ("repayment", "b", 15, 25)]
    status = gov.pool("plan")
    assert (status.available, status.debt) == (25, 0)
    assert balances(gov)["b"] == (15, 0, 25)


def test_release_gives_holds_back_to_the_same_grants(gov: Governor) -> None:
    pool(gov, limit=0)
    gov.add_grant("plan", 30, grant_id="a", priority=1)
    gov.add_grant("plan", 30, grant_id="b", priority=2)
    assert gov.authorize("r1", ACME, "openai", "m", tokens(40)).allowed
    assert balances(gov) == {"a": (0, 30, 0), "b": (0, 10, 20)}
    gov.release("r1")
    gov.release("r1")  # twice: nothing more
    assert balances(gov) == {"a": (0, 0, 30), "b": (0, 0, 30)}
    kinds = [(k, g, n) for k, g, n, _ in ledger(gov)]
    assert kinds[-4:] == [("debit", "a", 30), ("debit", "b", 10), ("refund", "a", 30),
                          ("refund", "b", 10)]  # fmt: skip


def test_a_grant_counts_only_between_effective_and_expiry(gov: Governor, clock: Clock) -> None:
    pool(gov, limit=0)
    start = clock.now
    gov.add_grant("plan", 30, grant_id="later", effective_at=start + timedelta(hours=1))
    gov.add_grant("plan", 30, grant_id="now", expires_at=start + timedelta(hours=2))
    assert not gov.authorize("r1", ACME, "openai", "m", tokens(31)).allowed
    held = gov.authorize("r2", ACME, "openai", "m", tokens(20), ttl=4 * 3600)
    assert held.allowed  # held on "now"
    clock.advance(hours=2)  # "now" expires while r2 holds 20 of it
    assert gov.pool("plan").available == 30
    assert gov.authorize("r3", ACME, "openai", "m", tokens(5)).allowed  # draws on "later"
    expiries = [e for e in ledger(gov) if e[0] == "expiry"]
    assert expiries == [("expiry", "now", 10, 30)]  # written once, when first seen
    gov.commit("r2", tokens(15))  # the hold stood; 5 refunded to an expired grant expire at once
    assert [e[:3] for e in ledger(gov)[-2:]] == [("refund", "now", 5), ("expiry", "now", 5)]
    assert balances(gov)["now"] == (15, 0, 0)
    assert gov.pool("plan").available == 25


def test_a_voided_grant_is_gone_but_its_holds_stand(gov: Governor) -> None:
    pool(gov, limit=0)
    gov.add_grant("plan", 30, grant_id="a")
    assert gov.authorize("r1", ACME, "openai", "m", tokens(10)).allowed
    voided = gov.void_grant("plan", "a")
    assert voided.voided_at is not None
    assert gov.void_grant("plan", "a") == voided  # twice: the same
    assert ("void", "a", 20, 0) in ledger(gov)
    assert not gov.authorize("r2", ACME, "openai", "m", tokens(1)).allowed
    gov.commit("r1", tokens(10))
    assert balances(gov)["a"] == (10, 0, 0)


def test_grants_are_idempotent_per_payment_id(gov: Governor) -> None:
    pool(gov)
    first, added = gov.add_grant("plan", 10, idempotency_key="pay_1")
    again, added_again = gov.add_grant("plan", 10, idempotency_key="pay_1")
    assert added and not added_again and again.id == first.id
    with pytest.raises(ConflictError):
        gov.add_grant("plan", 11, idempotency_key="pay_1")
    assert len(gov.pool("plan").grants) == 1
    assert [e[0] for e in ledger(gov)] == ["grant"]


def test_only_pools_take_grants_and_members_must_match(gov: Governor) -> None:
    gov.create_budget({"id": "plain", "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": 10})  # fmt: skip
    with pytest.raises(ValidationError) as plain:
        gov.add_grant("plain", 10)
    assert plain.value.field == "pool"
    gov.delete_budget("plain")
    pool(gov, per="user")
    with pytest.raises(ValidationError) as member:
        gov.add_grant("plan", 10)
    assert member.value.field == "member"
    gov.add_grant("plan", 10, member="u1")
    decision = gov.authorize("r1", ACME, "openai", "m", tokens(105))
    assert decision.allowed
    other = gov.authorize("r2", {"tenant": "acme", "user": "u2"}, "openai", "m", tokens(105))
    assert not other.allowed


def test_every_entry_carries_the_balance_after_it(gov: Governor) -> None:
    pool(gov, limit=0)
    gov.add_grant("plan", 30, grant_id="a")
    gov.authorize("r1", ACME, "openai", "m", tokens(10))
    gov.commit("r1", tokens(4))
    assert ledger(gov) == [("grant", "a", 30, 30), ("debit", "a", 10, 20), ("refund", "a", 6, 26)]
    assert [e.kind for e in gov.credit_ledger("plan", after_id=2)] == [EntryKind.REFUND]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rebuild_restores_every_balance_after_a_random_workload(
    gov: Governor, clock: Clock, seed: int
) -> None:
    rng = random.Random(seed)
    pool(gov, limit=50, per="user")
    held: list[tuple[str, str]] = []
    for i in range(120):
        user = rng.choice(["u1", "u2"])
        subject = {"tenant": "acme", "user": user}
        roll = rng.random()
        if roll < 0.15:
            minutes = rng.randint(1, 90)
            expires = clock.now + timedelta(minutes=minutes) if rng.random() < 0.5 else None
            kind = rng.choice(["purchase", "promotional"])
            amount, priority = rng.randint(10, 60), rng.randint(0, 2)
            gov.add_grant("plan", amount, member=user, priority=priority, expires_at=expires,
                          kind=kind)  # fmt: skip
        elif roll < 0.2 and gov.pool("plan", member=user).grants:
            grant = rng.choice(gov.pool("plan", member=user).grants).grant
            gov.void_grant("plan", grant.id, member=user)
        elif roll < 0.6 or not held:
            request_id = f"r{i}"
            ttl = rng.choice([60, 3600])
            if gov.authorize(request_id, subject, "openai", "m", tokens(rng.randint(1, 40)),
                             ttl=ttl).allowed:  # fmt: skip
                held.append((request_id, user))
        else:
            request_id, user = held.pop(rng.randrange(len(held)))
            if rng.random() < 0.25:
                gov.release(request_id)
            else:
                gov.commit(request_id, tokens(rng.randint(0, 70)))
        clock.advance(minutes=rng.randint(0, 5))
    for request_id, _ in held:
        gov.commit(request_id, tokens(rng.randint(0, 70)))
    before = gov.store.counters()
    pools = {u: gov.pool("plan", member=u) for u in ("u1", "u2")}
    assert all(reserved == 0 and used >= 0 for used, reserved in before.values())
    for status in pools.values():
        assert all(g.used + g.reserved <= g.grant.amount for g in status.grants)
    # Each member's last entry carries the balance the pool now shows (none went stale).
    for user, status in pools.items():
        entries = gov.credit_ledger("plan", member=user, limit=1000)
        last = [e for e in entries if e.at <= clock.now][-1]
        assert last.balance == status.available - status.debt or any(
            g.grant.ended(clock.now) and not g.grant.closed for g in status.grants
        )
    # Every token used is on the allowance, on a grant, or debt: nothing lost, nothing twice.
    events = gov.events(EventQuery(limit=10_000))
    spent = sum(e.usage.input_tokens for e in events if e.status.counts)
    assert spent == sum(used for used, _ in before.values())
    gov.rebuild()
    assert gov.store.counters() == before
    assert {u: gov.pool("plan", member=u) for u in ("u1", "u2")} == pools


def test_held_grants_read_the_counters_grant_key_names(gov: Governor) -> None:
    """SQLite reads a member's grants and their counters in one join that builds each
    counter key in SQL: it must name the counters ``grant_key`` and ``debt_key`` name."""
    pool(gov, limit=0)
    gov.add_grant("plan", 30, grant_id="g1", priority=1)
    gov.add_grant("plan", 30, grant_id="g2", priority=2)
    assert gov.authorize("r1", ACME, "openai", "m", tokens(40)).allowed
    gov.commit("r1", tokens(75))  # 60 from the grants, 15 of debt
    assert gov.authorize("r2", ACME, "openai", "m", tokens(0)).allowed
    key = gov.store.find_budget("plan", "acme").key
    wanted = [(grant_key(key, "g1"), "", 0), (grant_key(key, "g2"), "", 0), (debt_key(key), "", 0)]

    def both(tx: Any) -> tuple[Any, Any]:
        return tx.held_grants(key, ""), tx.read_keys(wanted)

    (grants, held, debt), direct = gov.store._read(both)  # type: ignore[attr-defined]
    assert dict(zip([g.id for g in grants], held, strict=True)) == {"g1": direct[0],
                                                                    "g2": direct[1]}  # fmt: skip
    assert debt == direct[2] and debt.used == 15
    assert [tuple(c) for c in direct[:2]] == [(30, 0), (30, 0)]


def test_recurring_grants_are_given_once_a_period_and_expire_at_its_end(
    gov: Governor, clock: Clock
) -> None:
    pool(gov, limit=0, recurring_grants=[{"amount": 30, "every": "month"}])
    assert gov.pool("plan").available == 30  # due, not given yet: shown as if given
    assert gov.authorize("r1", ACME, "openai", "m", tokens(20)).allowed
    gov.commit("r1", tokens(20))
    assert not gov.authorize("r2", ACME, "openai", "m", tokens(20)).allowed
    [given] = gov.pool("plan").grants
    assert (given.grant.kind.value, given.used, given.available) == ("promotional", 20, 10)
    assert given.grant.expires_at is not None and given.grant.expires_at.day == 1
    clock.now = given.grant.expires_at + timedelta(hours=1)  # the next month
    assert gov.authorize("r3", ACME, "openai", "m", tokens(25)).allowed
    kinds = [e[0] for e in ledger(gov)]
    assert kinds.count("grant") == 2 and kinds.count("expiry") == 1
    assert ("expiry", given.grant.id, 10, 30) in ledger(gov)
    live = gov.store.counters()
    gov.rebuild()
    assert gov.store.counters() == live
