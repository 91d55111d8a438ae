"""Counters are derived state: rebuilding them from the ledger gives the live ones.

A random workload (authorize, commit above and below the estimate, commit on
another model, release, expiry, late commits, post-hoc records in the past,
refusals, time moving across day and DST boundaries) runs against a mix of
budgets; then ``rebuild`` must reproduce every counter and rollup exactly.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from allotment.governor import Governor
from tests.conftest import Clock

BUDGETS: list[dict[str, Any]] = [
    {"id": "t-day", "meter": "tokens", "window": "day", "limit": 40_000, "per": "tenant"},
    {"id": "a-week", "tenant": "a", "meter": "tokens", "window": "week@Europe/Berlin"},
    {"id": "a-user", "tenant": "a", "meter": "output_tokens", "window": "day", "per": "user",
     "limit": 3_000},
    {"id": "a-alice", "tenant": "a", "meter": "output_tokens", "window": "day", "per": "user",
     "match": {"user": "alice"}, "overrides": True, "limit": 6_000},
    {"id": "a-group", "tenant": "a", "meter": "requests", "window": "rolling:1h",
     "match": {"group": "eng"}, "limit": 40},
    {"id": "b-mini", "tenant": "b", "meter": "cost", "window": "month", "limit": "0.50",
     "match": {"model": "gpt-4o-mini*"}},
    {"id": "b-life", "tenant": "b", "meter": "requests", "window": "lifetime", "mode": "shadow",
     "limit": 50},
]  # fmt: skip
USERS = ["alice", "bob", "carol", None]
MODELS = ["gpt-4o", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"]


def random_subject(rng: random.Random) -> dict[str, Any]:
    subject: dict[str, Any] = {"tenant": rng.choice("ab")}
    user = rng.choice(USERS)
    if user:
        subject["user"] = user
        subject["groups"] = ["eng"] if user != "carol" else ["sales"]
    subject["feature"] = rng.choice(["chat", "search"])
    return subject


def random_usage(rng: random.Random) -> dict[str, int]:
    return {
        "input_tokens": rng.randrange(0, 2000),
        "output_tokens": rng.randrange(0, 800),
        "cost_micros": rng.randrange(0, 20_000),
    }


def step(gov: Governor, rng: random.Random, clock: Clock, i: int, held: list[str]) -> None:
    roll = rng.random()
    if roll < 0.45:
        rid = f"r{i}"
        decision = gov.authorize(
            rid, random_subject(rng), "openai", rng.choice(MODELS), random_usage(rng),
            ttl=rng.choice([30, 600]),
        )  # fmt: skip
        if decision.allowed:
            held.append(rid)
    elif roll < 0.75 and held:
        rid = held.pop(rng.randrange(len(held)))
        model = rng.choice([None, *MODELS])
        gov.commit(rid, random_usage(rng), model=model, status=rng.choice(["success", "error"]))
    elif roll < 0.85 and held:
        gov.release(held.pop(rng.randrange(len(held))))
    elif roll < 0.95:
        past = clock.now - timedelta(hours=rng.randrange(0, 72))
        gov.record(f"p{i}", random_subject(rng), "openai", rng.choice(MODELS),
                   random_usage(rng), occurred_at=past)  # fmt: skip
    else:
        clock.advance(minutes=rng.randrange(1, 240))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rebuild_equals_live(gov: Governor, clock: Clock, seed: int) -> None:
    clock.now = datetime(2026, 10, 24, 20, 0, tzinfo=UTC)  # crosses Berlin's DST change
    rng = random.Random(seed)
    for spec in BUDGETS:
        gov.create_budget(spec)
    held: list[str] = []
    for i in range(600):
        step(gov, rng, clock, i, held)
    live_counters = gov.store.counters()
    live_usage = gov.usage("a", by=["day", "user", "model", "status"]) + gov.usage(
        "b", by=["hour", "feature"]
    )
    assert live_counters  # the workload really did something
    stats = gov.rebuild()
    assert stats.events > 100
    assert gov.store.counters() == live_counters
    assert (
        gov.usage("a", by=["day", "user", "model", "status"])
        + gov.usage("b", by=["hour", "feature"])
        == live_usage
    )
