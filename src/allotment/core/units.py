"""Units on the wire: integers in base units, named beside them, and shown for people.

Every amount allotment answers with (over HTTP, in ``to_dict`` forms, in the
CLI's ``--json``) is an integer in the base unit of what it counts, and the
object holding it names that unit in ``unit``:

| meter | ``unit`` | human unit (``display``) |
| --- | --- | --- |
| ``tokens``, ``input_tokens``, ``output_tokens`` | ``tokens`` | tokens |
| ``cost`` | ``micros`` (of the object's ``currency``) | currency units |
| ``audio_seconds`` | ``ms`` | seconds |
| ``requests`` | ``requests`` | requests |
| ``credits`` | ``credits`` | credits |
| ``concurrency`` | ``leases`` | leases in flight |

Usage objects (a call's usage, usage totals) mix meters; there each field's
name carries its unit (``*_tokens``, ``audio_ms``, ``cost_micros``), and their
human form uses the names the input takes for human amounts (``audio_seconds``,
``cost``).

``shown`` writes an amount in its human unit as an exact decimal string: cost
with the currency's usual decimals (2 for most) when that is exact, else all
six; seconds with as few decimals as are exact; counts as the integer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from allotment.core.money import MICROS
from allotment.core.usage import Meter

__all__ = ["UNITS", "decimals", "shown", "shown_usage", "unit_of", "usage_row_json"]

#: the base unit of each meter, as answers name it in ``unit``
UNITS: dict[str, str] = {
    Meter.TOKENS: "tokens",
    Meter.INPUT_TOKENS: "tokens",
    Meter.OUTPUT_TOKENS: "tokens",
    Meter.COST: "micros",
    Meter.AUDIO_SECONDS: "ms",
    Meter.REQUESTS: "requests",
    Meter.CREDITS: "credits",
    Meter.CONCURRENCY: "leases",
}

#: ISO 4217 currencies whose usual number of decimals is not 2 (everything else has 2)
_DECIMALS = {
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
}


def unit_of(meter: str) -> str:
    """The base unit of ``meter`` (a ``Meter`` or its name)."""
    return UNITS[meter]


def decimals(currency: str | None) -> int:
    """The usual number of decimals of ``currency`` (2 when unknown or None)."""
    return 2 if currency is None else _DECIMALS.get(currency, 2)


def shown(units: int, unit: str, currency: str | None = None) -> str:
    """``units`` base units as an exact decimal string in the human unit.

    >>> shown(1_200_000, "micros", "EUR"), shown(1_234_500, "micros"), shown(3_500, "ms")
    ('1.20', '1.234500', '3.5')
    """
    if unit == "micros":
        return _money(units, decimals(currency))
    if unit == "ms":
        return _fraction(units, 1000, 3).rstrip("0").rstrip(".")
    return str(units)


def shown_usage(totals: Mapping[str, int | None], currency: str | None) -> dict[str, str | None]:
    """A usage object's figures in human units: ``audio_ms`` as ``audio_seconds``,
    ``cost_micros`` as ``cost`` (None when unpriced), counts as integer strings."""
    out: dict[str, str | None] = {}
    for name, value in totals.items():
        if name == "cost_micros":
            out["cost"] = None if value is None else _money(value, decimals(currency))
        elif name == "audio_ms":
            out["audio_seconds"] = None if value is None else shown(value, "ms")
        else:
            out[name] = None if value is None else str(value)
    return out


class UsageLine(Protocol):
    """One group of a usage breakdown: the store's ``UsageRow`` or the client's."""

    @property
    def group(self) -> Mapping[str, str | None]: ...
    @property
    def calls(self) -> int: ...
    @property
    def errors(self) -> int: ...
    @property
    def blocked(self) -> int: ...
    @property
    def totals(self) -> Mapping[str, int]: ...


def usage_row_json(row: UsageLine, currency: str | None) -> dict[str, Any]:
    """A usage row as ``/v1/usage`` answers it (and the CLI's ``--json`` prints it):
    the usage sums beside the group, in the ledger's ``currency``, and for people."""
    totals = dict(row.totals)
    return {"group": dict(row.group), "calls": row.calls, "errors": row.errors,
            "blocked": row.blocked, **totals, "currency": currency,
            "display": shown_usage(totals, currency)}  # fmt: skip


def _money(micros: int, places: int) -> str:
    """Micro-units with ``places`` decimals when exact, else all six."""
    step = 10 ** (6 - places)
    if micros % step:
        return _fraction(micros, MICROS, 6)
    return _fraction(micros // step, 10**places, places)


def _fraction(value: int, scale: int, places: int) -> str:
    """``value / scale`` written with exactly ``places`` decimals (``scale`` = 10**places)."""
    sign = "-" if value < 0 else ""
    whole, rest = divmod(abs(value), scale)
    return f"{sign}{whole}.{rest:0{places}d}" if places else f"{sign}{whole}"
