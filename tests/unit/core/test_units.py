"""Units as answers name them, and amounts as people read them (``allotment.core.units``)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from allotment.core.budgets import Budget
from allotment.core.decisions import BudgetView, Warning
from allotment.core.money import MICROS, units_to_decimal
from allotment.core.units import UNITS, shown, shown_usage, unit_of
from allotment.core.usage import Meter, Usage
from allotment.core.windows import Window


def test_every_meter_has_a_unit() -> None:
    assert {m: unit_of(m) for m in Meter} == {
        Meter.TOKENS: "tokens", Meter.INPUT_TOKENS: "tokens", Meter.OUTPUT_TOKENS: "tokens",
        Meter.COST: "micros", Meter.AUDIO_SECONDS: "ms", Meter.REQUESTS: "requests",
        Meter.CREDITS: "credits", Meter.CONCURRENCY: "leases",
    }  # fmt: skip
    assert UNITS["cost"] == "micros"  # by name too


@pytest.mark.parametrize(
    ("units", "unit", "currency", "text"),
    [
        (1_200_000, "micros", "EUR", "1.20"),
        (5_000_000, "micros", None, "5.00"),
        (0, "micros", "USD", "0.00"),
        (1_234_500, "micros", "USD", "1.234500"),  # not exact at 2 decimals: all six
        (5, "micros", "USD", "0.000005"),
        (-1_500_000, "micros", "USD", "-1.50"),
        (1_234_000_000, "micros", "JPY", "1234"),  # no minor unit
        (1_234_500, "micros", "JPY", "1.234500"),
        (1_234_000, "micros", "KWD", "1.234"),  # three decimals
        (3_500, "ms", None, "3.5"),
        (90_000, "ms", None, "90"),
        (1, "ms", None, "0.001"),
        (12_345, "tokens", None, "12345"),
        (3, "requests", None, "3"),
    ],
)
def test_shown(units: int, unit: str, currency: str | None, text: str) -> None:
    assert shown(units, unit, currency) == text


@given(st.integers(min_value=0, max_value=10**15), st.sampled_from(["USD", "JPY", "KWD"]))
def test_shown_money_is_exact(micros: int, currency: str) -> None:
    assert Decimal(shown(micros, "micros", currency)) == units_to_decimal(micros, MICROS)


@given(st.integers(min_value=0, max_value=10**15))
def test_shown_seconds_are_exact(ms: int) -> None:
    assert Decimal(shown(ms, "ms")) * 1000 == ms


def test_shown_usage_names_human_amounts_as_the_input_takes_them() -> None:
    usage = Usage(input_tokens=10, audio_ms=1500, cost_micros=2_400_000).to_dict()
    human = shown_usage(usage, "EUR")
    assert (human["input_tokens"], human["audio_seconds"], human["cost"]) == ("10", "1.5", "2.40")
    assert "audio_ms" not in human and "cost_micros" not in human
    assert shown_usage(Usage().to_dict(), "USD")["cost"] is None  # unpriced


def view(limit: int | None, used: int, reserved: int = 0) -> BudgetView:
    budget = Budget("b", Meter.TOKENS, Window.parse("day"), limit)
    span = budget.window.span(datetime(2026, 11, 23, 12, tzinfo=UTC))
    return BudgetView(budget, "", span, used, reserved)


@pytest.mark.parametrize(
    ("limit", "used", "percent", "available"),
    [
        (1000, 0, "0.00", "100.00"),
        (1000, 123, "12.30", "87.70"),
        (3, 1, "33.33", "66.67"),
        (1000, 1000, "100.00", "0.00"),
        (1000, 1500, "150.00", "0.00"),
        (0, 0, "100.00", "0.00"),  # a zero limit is used up
        (None, 5, None, None),
    ],
)
def test_percentages_have_two_decimals(
    limit: int | None, used: int, percent: str | None, available: str | None
) -> None:
    answer = view(limit, used).to_dict()
    assert (answer["percent"], answer["percent_available"]) == (percent, available)
    if percent is not None:
        assert Decimal(answer["percent"]) == view(limit, used).percent


def test_warnings_write_percentages_with_two_decimals() -> None:
    warning = Warning("b", "soft_threshold", Decimal(100), Decimal(80)).to_dict()
    assert (warning["percent"], warning["threshold"]) == ("100.00", "80.00")
    assert Warning(None, "no_budget", None).to_dict()["percent"] is None


def test_a_view_leaves_display_out_on_request() -> None:
    answer = view(1000, 10).to_dict(display=False)
    assert answer["unit"] == "tokens" and "display" not in answer
    shown_view = view(1000, 10, 5).to_dict()
    assert shown_view["display"] == {"used": "10", "reserved": "5", "limit": "1000",
                                     "remaining": "985", "overshoot": "0"}  # fmt: skip
    assert view(None, 10).to_dict()["display"]["limit"] is None
