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

__all__ = [
    "MAX_AMOUNT",
    "MICROS",
    "check_amount",
    "decimal_to_units",
    "parse_decimal",
    "units_to_decimal",
]


def check_amount(value: object, field: str) -> int:
    """Return ``value`` as a counted integer amount, or raise naming ``field``.

    Booleans, floats (NaN and infinities included), negatives and absurdly
    large values are rejected: a usage figure is a non-negative integer.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"must be a non-negative integer, got {_shown(value)}")
    if value < 0:
        raise ValidationError(field, f"must not be negative, got {_shown(value)}")
    if value > MAX_AMOUNT:
        raise ValidationError(field, f"is absurdly large (more than {MAX_AMOUNT})")
    return value


#: A human amount has at most this many characters or digits. Checked before
#: ``Decimal`` sees it: "1e400000" is eight characters, but turning it into an
#: integer takes seconds of CPU with the GIL held, so the exponent is bounded too.
MAX_DECIMAL_DIGITS = 40
#: ... and its leading digit sits at most this many places from the point.
MAX_DECIMAL_EXPONENT = 24


def parse_decimal(value: object, field: str) -> Decimal:
    """An untrusted human amount (``"1.25"``, ``Decimal``, ``int``) as a bounded ``Decimal``.

    Refuses booleans, floats, non-numbers, non-finite values, more than
    ``MAX_DECIMAL_DIGITS`` digits and a magnitude beyond 10^``MAX_DECIMAL_EXPONENT``
    either way, before any arithmetic: every result is cheap to compute with.
    """
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise ValidationError(field, f"must be a decimal string or integer, got {_shown(value)}")
    if isinstance(value, int) and value.bit_length() > 4 * MAX_DECIMAL_DIGITS:
        raise ValidationError(field, "has too many digits")
    if isinstance(value, str) and len(value) > MAX_DECIMAL_DIGITS + 8:  # sign, point, exponent
        raise ValidationError(field, "has too many digits")
    try:
        amount = value if isinstance(value, Decimal) else Decimal(value)
    except InvalidOperation:
        raise ValidationError(field, f"is not a number: {_shown(value)}") from None
    if not amount.is_finite():
        raise ValidationError(field, f"must be finite, got {_shown(value)}")
    if not amount:
        return amount
    if len(amount.as_tuple().digits) > MAX_DECIMAL_DIGITS:
        raise ValidationError(field, "has too many digits")
    if amount.adjusted() > MAX_DECIMAL_EXPONENT:
        raise ValidationError(field, f"is absurdly large (10^{MAX_DECIMAL_EXPONENT} or more)")
    if amount.adjusted() < -MAX_DECIMAL_EXPONENT:
        raise ValidationError(field, f"has more precision than 10^-{MAX_DECIMAL_EXPONENT}")
    return amount


def decimal_to_units(value: object, scale: int, field: str) -> int:
    """Convert a human amount (``"1.25"``, ``Decimal``, ``int``) to integer base units.

    ``scale`` is the number of base units in one human unit, a power of ten
    (``MICROS`` for a currency, 1000 for seconds counted in milliseconds). The
    result must be exact: ``"0.0000001"`` USD is not a whole micro-unit and is
    refused rather than silently rounded. The arithmetic is on integers, so no
    decimal context can round a long value into a whole one.
    """
    amount = parse_decimal(value, field)
    if not amount:
        return 0
    sign, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite, checked above
    places = exponent + _DIGITS[scale]
    coefficient = int("".join(map(str, digits)))
    if places >= 0:
        units = coefficient * 10**places
    else:
        units, rest = divmod(coefficient, 10**-places)
        if rest:
            raise ValidationError(field, f"{_shown(value)} has more precision than 1/{scale}")
    return check_amount(-units if sign else units, field)


_DIGITS = {10**n: n for n in range(13)}


def _shown(value: object) -> str:
    """``value`` for an error message, cut short: a message never spells out a huge input."""
    if isinstance(value, int) and value.bit_length() > 64:
        return "a huge integer"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def units_to_decimal(units: int, scale: int) -> Decimal:
    """Render integer base units as an exact human ``Decimal``."""
    if scale == 1:
        return Decimal(units)
    digits = len(str(scale)) - 1
    return (Decimal(units) / scale).quantize(Decimal(1).scaleb(-digits))
