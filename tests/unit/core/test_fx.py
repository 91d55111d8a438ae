"""Exchange rates: exact conversion, rounding up, effective dates."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from allotment.core.fx import FxRate, Rates
from allotment.errors import ConfigurationError, ValidationError

JAN = datetime(2026, 1, 1, tzinfo=UTC)
JUL = datetime(2026, 7, 1, tzinfo=UTC)
rates = Rates([
    FxRate("USD", "EUR", Decimal("0.92"), JAN),
    FxRate("USD", "EUR", Decimal("0.90"), JUL),
    FxRate("GBP", "USD", Decimal("1.27"), JAN),
])  # fmt: skip


def test_direct_rate_by_effective_date() -> None:
    assert rates.convert(1_000_000, "USD", "EUR", datetime(2026, 3, 1, tzinfo=UTC)) == 920_000
    assert rates.convert(1_000_000, "USD", "EUR", JUL) == 900_000  # from the instant on
    assert rates.convert(1_000_000, "USD", "EUR", datetime(2025, 1, 1, tzinfo=UTC)) == 920_000


def test_inverse_pair_is_exact_and_rounds_up() -> None:
    # 1 USD = 1/1.27 GBP = 0.787401574803... : 1 000 000 micro-USD -> 787 401.57... -> 787 402
    assert rates.convert(1_000_000, "USD", "GBP", JAN) == 787_402
    assert rates.convert(127, "GBP", "USD", JAN) == 162  # 161.29 -> 162
    assert rates.convert(0, "USD", "GBP", JAN) == 0


def test_identity_and_unknown_pairs() -> None:
    assert rates.convert(5, "EUR", "EUR", JAN) == 5
    assert rates.knows("EUR", "USD") and not rates.knows("EUR", "GBP")
    with pytest.raises(ConfigurationError, match="EUR to GBP"):
        rates.convert(5, "EUR", "GBP", JAN)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"source": "usd", "target": "EUR", "rate": "1", "effective_from": "2026-01-01T00:00Z"},
         "fx.source"),
        ({"source": "USD", "target": "USD", "rate": "1", "effective_from": "2026-01-01T00:00Z"},
         "fx.target"),
        ({"source": "USD", "target": "EUR", "rate": "-1", "effective_from": "2026-01-01T00:00Z"},
         "fx.rate"),
        ({"source": "USD", "target": "EUR", "rate": 0.92, "effective_from": "2026-01-01T00:00Z"},
         "fx.rate"),
        ({"source": "USD", "target": "EUR", "rate": "1", "effective_from": "2026-01-01T00:00"},
         "fx.effective_from"),
        ({"source": "USD", "target": "EUR", "rate": "1", "when": "x"}, "fx.when"),
    ],
)  # fmt: skip
def test_bad_rates_name_the_field(spec: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        FxRate.from_spec(spec, "fx")
    assert info.value.field == field
