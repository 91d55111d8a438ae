"""Cost budgets in EUR and GBP over a USD ledger priced by the catalog (user system 2)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from allotment.core.decisions import Reason
from allotment.errors import ValidationError
from allotment.governor import Governor
from tests.conftest import Clock

BOB = {"tenant": "gw", "user": "bob"}
# gpt-4o: 2000 in x $2.50 + 1000 out x $10 per million = 0.015 USD per call
CALL = {"input_tokens": 2_000, "output_tokens": 1_000}


@pytest.fixture
def gw(make_governor: Callable[..., Governor]) -> Governor:
    gov: Governor = make_governor()
    gov.set_rate("USD", "EUR", "0.92", datetime(2026, 1, 1, tzinfo=UTC))
    gov.create_budget({"id": "eur-day", "tenant": "gw", "meter": "cost", "window": "day",
                       "per": "user", "limit": "0.05", "currency": "EUR"})  # fmt: skip
    return gov


def test_costs_count_in_the_budget_currency(gw: Governor) -> None:
    gw.record("a", BOB, "openai", "gpt-4o", CALL)
    view = gw.status(BOB)[0]
    assert (view.used, view.currency) == (13_800, "EUR")  # 15 000 micro-USD x 0.92


def test_refusal_compares_in_the_budget_currency(gw: Governor) -> None:
    for i in range(3):  # 3 x 0.0138 = 0.0414 EUR of 0.05
        assert gw.authorize(f"r{i}", BOB, "openai", "gpt-4o", CALL).allowed
        gw.commit(f"r{i}", CALL)
    decision = gw.authorize("r3", BOB, "openai", "gpt-4o", CALL)
    assert decision.reason is Reason.ESTIMATE_EXCEEDS_REMAINING
    assert (decision.refusals[0].requested, decision.refusals[0].remaining) == (13_800, 8_600)


def test_a_new_rate_applies_from_its_time_and_recounts(gw: Governor, clock: Clock) -> None:
    gw.record("a", BOB, "openai", "gpt-4o", CALL)
    clock.advance(minutes=1)
    gw.set_rate("USD", "EUR", "0.90", clock.now)  # from now on: "a" keeps 0.92
    gw.record("b", BOB, "openai", "gpt-4o", CALL)
    assert gw.status(BOB)[0].used == 13_800 + 13_500
    # a correction reaching back before the first call recounts it
    gw.set_rate("USD", "EUR", "1.00", clock.now.replace(hour=0))
    assert gw.status(BOB)[0].used == 15_000 + 13_500
    live = gw.store.counters()
    gw.rebuild()
    assert gw.store.counters() == live


def test_budget_in_a_currency_without_a_rate_is_refused(gw: Governor) -> None:
    with pytest.raises(ValidationError) as info:
        gw.create_budget({"id": "gbp", "tenant": "gw", "meter": "cost", "window": "day",
                          "currency": "GBP"})  # fmt: skip
    assert info.value.field == "currency"
    gw.set_rate("GBP", "USD", "1.27")
    gw.create_budget({"id": "gbp", "tenant": "gw", "meter": "cost", "window": "day",
                      "currency": "GBP", "limit": "1"})  # fmt: skip
    gw.record("a", BOB, "openai", "gpt-4o", CALL)
    gbp = next(v for v in gw.status(BOB) if v.budget_id == "gbp")
    assert gbp.used == 11_812  # 15 000 / 1.27 = 11 811.02 -> rounded up
