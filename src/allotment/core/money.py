"""Money as integer micro-units; Decimal only at the edges.

1 USD is 1 000 000 micro-USD. A cost never passes through a float: values come
in as ``int`` micro-units or as ``Decimal``/``str`` currency amounts, and go out
the same way.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from allotment.errors import ValidationError

MICROS = 1_000_000
#: A sanity bound for any counted amount: 10^15 micro-units is a billion dollars,
#: 10^15 tokens is far beyond any real call. Larger values are input errors.
MAX_AMOUNT = 10**15

__all__ = ["MAX_AMOUNT", "MICROS", "check_amount", "decimal_to_units", "units_to_decimal"]


def check_amount(value: object, field: str) -> int:
    """Return ``value`` as a counted integer amount, or raise naming ``field``.

    Booleans, floats (NaN and infinities included), negatives and absurdly
    large values are rejected: a usage figure is a non-negative integer.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"must be a non-negative integer, got {value!r}")
    if value < 0:
        raise ValidationError(field, f"must not be negative, got {value}")
    if value > MAX_AMOUNT:
        raise ValidationError(field, f"is absurdly large ({value} > {MAX_AMOUNT})")
    return value


def decimal_to_units(value: object, scale: int, field: str) -> int:
    """Convert a human amount (``"1.25"``, ``Decimal``, ``int``) to integer base units.

    ``scale`` is the number of base units in one human unit (``MICROS`` for a
    currency, 1000 for seconds counted in milliseconds). The result must be
    exact: ``"0.0000001"`` USD is not a whole micro-unit and is refused rather
    than silently rounded.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise ValidationError(field, f"must be a decimal string or integer, got {value!r}")
    if not isinstance(value, int | str | Decimal):
        raise ValidationError(field, f"must be a decimal string or integer, got {value!r}")
    try:
        amount = Decimal(value) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValidationError(field, f"is not a number: {value!r}") from None
    if not amount.is_finite():
        raise ValidationError(field, f"must be finite, got {value!r}")
    units = amount * scale
    if units != units.to_integral_value():
        raise ValidationError(field, f"{value} has more precision than 1/{scale}")
    return check_amount(int(units), field)


def units_to_decimal(units: int, scale: int) -> Decimal:
    """Render integer base units as an exact human ``Decimal``."""
    if scale == 1:
        return Decimal(units)
    digits = len(str(scale)) - 1
    return (Decimal(units) / scale).quantize(Decimal(1).scaleb(-digits))
