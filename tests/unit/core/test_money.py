"""Human amounts are bounded before any arithmetic: no input can stall a worker."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from allotment.core.money import MICROS, check_amount, decimal_to_units, parse_decimal
from allotment.errors import ValidationError

HOSTILE = ["1e400000", "1e999999", "1e5000", "-1e400000", "9" * 5000, "1e-999999999",
           "1" + "0" * 40, "0." + "0" * 60 + "1"]  # fmt: skip


@pytest.mark.parametrize("text", HOSTILE)
@pytest.mark.parametrize("scale", [MICROS, 1000, 1])
def test_hostile_amounts_are_refused_at_once(text: str, scale: int) -> None:
    started = time.process_time()
    with pytest.raises(ValidationError) as refused:
        decimal_to_units(text, scale, "usage.cost")
    assert refused.value.field == "usage.cost"
    assert len(str(refused.value)) < 200  # the message never spells out a huge number
    assert time.process_time() - started < 0.05


@pytest.mark.parametrize(
    ("text", "scale", "units"),
    [("1.25", MICROS, 1_250_000), ("0.000001", MICROS, 1), ("1e3", 1000, 1_000_000),
     ("0", MICROS, 0), ("0e-999999999", MICROS, 0), ("0E+999999", MICROS, 0),
     ("1.500", 1000, 1500), (Decimal("2.5"), 1000, 2500), (7, MICROS, 7_000_000),
     ("1000000000", MICROS, 10**15)],
)  # fmt: skip
def test_exact_amounts_convert(text: object, scale: int, units: int) -> None:
    assert decimal_to_units(text, scale, "f") == units


@pytest.mark.parametrize("text", ["0.0000001", "1e-7", "1.0000000000000000000000000000001"])
def test_more_precision_than_a_unit_is_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="precision"):
        decimal_to_units(text, MICROS, "cost")


@pytest.mark.parametrize("value", [True, False, 1.5, float("inf"), None, [1]])
def test_non_numbers_are_refused(value: object) -> None:
    with pytest.raises(ValidationError):
        parse_decimal(value, "f")


def test_a_huge_integer_is_refused_without_formatting_it() -> None:
    with pytest.raises(ValidationError) as refused:
        check_amount(10**5000, "usage.input_tokens")
    assert len(str(refused.value)) < 200
    with pytest.raises(ValidationError):
        decimal_to_units(10**5000, MICROS, "cost")
