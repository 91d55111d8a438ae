"""Rate limits (issue 19): budgets over rolling windows, refused with ``rate_limited``
and the exact moment enough usage has left the window.

A 60-second window counts in one-second buckets: a bucket leaves it once the
window's first bucket is past it, so usage in the bucket starting at second b
stops counting at b + 1 + 60. The retry time is that moment for the oldest
buckets whose leaving makes room for the call: never a guess, never early.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from allotment.core.decisions import Reason
from allotment.core.windows import Window
from allotment.governor import Governor
from tests.conftest import Clock

ACME = {"tenant": "acme", "user": "u1"}


def rpm(gov: Governor, limit: int = 3, meter: str = "requests", window: str = "rolling:60") -> None:
    gov.create_budget({"id": "rpm", "tenant": "acme", "meter": meter, "window": window,
                       "limit": limit})  # fmt: skip


def test_a_full_window_refuses_until_its_oldest_calls_leave(gov: Governor, clock: Clock) -> None:
    rpm(gov)
    start = clock.now
    for i in range(3):
        assert gov.authorize(f"r{i}", ACME, "openai", "m").allowed
        gov.commit(f"r{i}", {"input_tokens": 1})
        clock.advance(seconds=10)
    refused = gov.authorize("r3", ACME, "openai", "m")
    assert refused.reason is Reason.RATE_LIMITED
    # The first call's bucket (second 0) leaves the window at 0 + 1 + 60.
    assert refused.retry_at == start + timedelta(seconds=61)
    clock.now = start + timedelta(seconds=60, microseconds=999_999)
    assert gov.authorize("r3", ACME, "openai", "m").reason is Reason.RATE_LIMITED
    clock.now = start + timedelta(seconds=61)
    assert gov.authorize("r3", ACME, "openai", "m").allowed


def test_the_retry_time_waits_for_enough_to_leave(gov: Governor, clock: Clock) -> None:
    rpm(gov, limit=1000, meter="tokens")
    start = clock.now
    for i, n in enumerate((100, 200, 300, 400)):  # at seconds 0, 5, 10, 15
        assert gov.authorize(f"r{i}", ACME, "openai", "m", {"input_tokens": n}).allowed
        clock.advance(seconds=5)
    # 1000 used; 450 more need the first three calls (600) gone: second 10's bucket.
    refused = gov.authorize("big", ACME, "openai", "m", {"input_tokens": 450})
    assert refused.reason is Reason.RATE_LIMITED
    assert refused.retry_at == start + timedelta(seconds=10 + 1 + 60)
    [view] = refused.budgets
    assert (view.used + view.reserved, view.remaining) == (1000, 0)


def test_a_call_larger_than_the_limit_is_never_told_to_retry(gov: Governor) -> None:
    rpm(gov, limit=1000, meter="tokens")
    refused = gov.authorize("huge", ACME, "openai", "m", {"input_tokens": 1001})
    assert refused.reason is Reason.ESTIMATE_EXCEEDS_LIMIT
    assert refused.retry_at is None


def test_a_budget_refusal_beside_a_rate_limit_has_no_retry_time(gov: Governor) -> None:
    rpm(gov, limit=1)
    gov.create_budget({"id": "day", "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": 10})  # fmt: skip
    gov.authorize("r0", ACME, "openai", "m", {"input_tokens": 10})
    refused = gov.authorize("r1", ACME, "openai", "m", {"input_tokens": 1})
    assert {r.reason for r in refused.refusals} == {Reason.RATE_LIMITED, Reason.HARD_CAP_EXCEEDED}
    assert refused.retry_at is None  # waiting for the rate limit would not help


def test_an_hour_long_window_counts_in_minute_buckets(gov: Governor, clock: Clock) -> None:
    rpm(gov, limit=2, window="rolling:1h")
    start = clock.now
    gov.authorize("r0", ACME, "openai", "m")
    clock.advance(seconds=90)  # bucket of minute 1
    gov.authorize("r1", ACME, "openai", "m")
    refused = gov.authorize("r2", ACME, "openai", "m")
    assert refused.retry_at == start + timedelta(seconds=60 + 3600)


@pytest.mark.parametrize(
    ("buckets", "need", "at"),
    [([(0, 5), (10, 5)], 5, 61), ([(0, 5), (10, 5)], 6, 71), ([(0, 5)], 6, None), ([], 1, None)],
)
def test_frees_at(buckets: list[tuple[int, int]], need: int, at: int | None) -> None:
    window = Window.parse("rolling:60")
    freed = window.frees_at(buckets, need)
    assert (None if freed is None else int(freed.timestamp())) == at
    assert Window.parse("day").frees_at(buckets, need) is None


@pytest.mark.postgres
def test_a_refusals_retry_time_costs_no_round_trip_on_postgres(
    clean_postgres_url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL reads a rolling window bucket by bucket with its sum, in the round
    trip that locks it: a refusal's Retry-After asks the database for nothing more (a
    group-commit batch answers it from the buckets it read: ``BatchTx._window``)."""
    from allotment.store import postgres

    gov = Governor(clean_postgres_url, clock=clock)
    rpm(gov, limit=2)
    for i in range(2):
        gov.authorize(f"r{i}", ACME, "openai", "m")
        clock.advance(seconds=5)
    asked: list[str] = []
    real = postgres._PostgresTx._rows

    def rows(self: object, sql: str, params: object = ()) -> object:
        asked.append(sql)
        return real(self, sql, params)  # type: ignore[arg-type]

    monkeypatch.setattr(postgres._PostgresTx, "_rows", rows)
    refused = gov.authorize("r2", ACME, "openai", "m")
    assert refused.reason is Reason.RATE_LIMITED
    assert refused.retry_at == clock.now - timedelta(seconds=10) + timedelta(seconds=61)
    assert asked and not [sql for sql in asked if "FROM counters" in sql]
    gov.close()
