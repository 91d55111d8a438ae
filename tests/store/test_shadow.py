"""A shadow budget decides and records what it would have refused, and never refuses.

On every backend: each authorize a shadow budget would have refused writes a
``shadow`` ledger entry naming the budget, the reason and the estimate, in the
same transaction; it counts toward nothing, and a replayed authorize writes
none again.
"""

from __future__ import annotations

from allotment.core.ledger import EventStatus
from allotment.governor import Governor
from allotment.store.base import EventQuery

ACME = {"tenant": "acme", "user": "u1"}


def shadow_events(gov: Governor) -> list[tuple[str, str | None, str | None, int]]:
    events = gov.events(EventQuery(tenant="acme", status=EventStatus.SHADOW))
    return [(e.request_id, e.budget_id, e.reason, e.estimate.tokens if e.estimate else -1)
            for e in events]  # fmt: skip


def test_what_a_shadow_budget_would_refuse_is_in_the_ledger(gov: Governor) -> None:
    gov.create_budget({"id": "trial", "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": 100, "mode": "shadow"})  # fmt: skip
    gov.create_budget({"id": "cap", "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": 1000})  # fmt: skip
    assert gov.authorize("small", ACME, "openai", "gpt-4o-mini", {"input_tokens": 50}).allowed
    big = gov.authorize("big", ACME, "openai", "gpt-4o-mini", {"input_tokens": 500})
    assert big.allowed and [r.budget_id for r in big.shadow_refusals] == ["trial"]
    gov.authorize("big", ACME, "openai", "gpt-4o-mini", {"input_tokens": 500})  # a replay
    gov.commit("small", {"input_tokens": 50})
    gov.commit("big", {"input_tokens": 400})
    huge = gov.authorize("huge", ACME, "openai", "gpt-4o-mini", {"input_tokens": 2000})
    assert not huge.allowed  # the enforced cap refuses it; the shadow budget would have too
    assert shadow_events(gov) == [
        ("big", "trial", "estimate_exceeds_remaining", 500),
        ("huge", "trial", "hard_cap_exceeded", 2000),  # 450 used of its 100 by then
    ]
    [view] = [v for v in gov.status(ACME) if v.budget_id == "trial"]
    assert (view.used, view.reserved) == (450, 0)  # shadow entries count toward nothing
    [row] = gov.usage("acme")
    assert (row.calls, row.blocked) == (2, 1)
    by_status = {r.group["status"]: r.calls + r.blocked for r in gov.usage("acme", ["status"])}
    assert by_status == {"success": 2, "blocked": 1}  # usage reports calls, not shadow entries
    live = gov.store.counters()
    gov.rebuild()
    assert gov.store.counters() == live
