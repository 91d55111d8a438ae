"""Exchange rates with effective dates, and exact conversion of money.

A rate says: from ``effective_from`` on, one unit of ``source`` is worth
``rate`` units of ``target``. The inverse pair is derived (1 / rate); there is
no triangulation through a third currency, so what converts is exactly what
was configured.

Conversion is exact Decimal arithmetic on integer micro-units, rounded up to a
whole micro-unit once, like prices: converting never undercharges a budget.
An instant before a pair's first rate uses that first rate.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal, localcontext

from allotment.core.money import parse_decimal
from allotment.errors import ConfigurationError, ValidationError

__all__ = ["NO_RATES", "FxRate", "Rates"]

_CODE = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True, slots=True)
class FxRate:
    """One unit of ``source`` is worth ``rate`` ``target`` from ``effective_from`` on."""

    source: str
    target: str
    rate: Decimal
    effective_from: datetime

    def __post_init__(self) -> None:
        for name in ("source", "target"):
            if not isinstance(getattr(self, name), str) or not _CODE.match(getattr(self, name)):
                raise ValidationError(name, "must be an ISO 4217 code such as EUR")
        if self.source == self.target:
            raise ValidationError("target", "must differ from source")
        if not isinstance(self.rate, Decimal) or not self.rate.is_finite() or self.rate <= 0:
            raise ValidationError("rate", "must be a positive, finite decimal")
        if self.effective_from.tzinfo is None:
            raise ValidationError("effective_from", "must be timezone-aware")

    @classmethod
    def from_spec(cls, spec: Mapping[str, object], field: str = "rate") -> FxRate:
        """From ``{source, target, rate: "0.92", effective_from: "2026-01-01T00:00:00Z"}``.

        Errors name ``field.rate`` and so on; with ``field=""``, the bare field names
        (a request body that is the rate itself)."""
        if not isinstance(spec, Mapping):
            raise ValidationError(field or "body", "must be an object")

        def name(part: str) -> str:
            return f"{field}.{part}" if field else part

        unknown = set(spec) - {"source", "target", "rate", "effective_from"}
        if unknown:
            raise ValidationError(name(sorted(unknown)[0]), "is not a rate field")
        raw, when = spec.get("rate"), spec.get("effective_from")
        rate = parse_decimal(raw, name("rate"))
        try:
            since = when if isinstance(when, datetime) else datetime.fromisoformat(str(when))
        except ValueError:
            raise ValidationError(name("effective_from"), "must be an ISO 8601 time") from None
        try:
            return cls(str(spec.get("source")), str(spec.get("target")), rate, since)
        except ValidationError as exc:
            raise (exc.within(field) if field else exc) from None

    def to_spec(self) -> dict[str, str]:
        """The spec form ``from_spec`` reads: the rate as decimal text, the time in ISO 8601."""
        return {"source": self.source, "target": self.target, "rate": str(self.rate),
                "effective_from": self.effective_from.isoformat()}  # fmt: skip


class Rates:
    """A set of exchange rates, looked up by pair and instant."""

    def __init__(self, rates: Iterable[FxRate] = ()) -> None:
        self._by_pair: dict[tuple[str, str], list[FxRate]] = {}
        for rate in sorted(rates, key=lambda r: r.effective_from):
            self._by_pair.setdefault((rate.source, rate.target), []).append(rate)
        self._starts = {pair: [r.effective_from for r in rs] for pair, rs in self._by_pair.items()}

    def __iter__(self) -> Iterator[FxRate]:
        return iter([r for rates in self._by_pair.values() for r in rates])

    def knows(self, source: str, target: str) -> bool:
        """Whether ``source`` converts to ``target`` (directly or by inverse)."""
        return (
            source == target
            or (source, target) in self._by_pair
            or ((target, source) in self._by_pair)
        )

    def rate(self, source: str, target: str, at: datetime) -> Decimal:
        """Units of ``target`` per unit of ``source`` at ``at``."""
        if source == target:
            return Decimal(1)
        direct = self._effective((source, target), at)
        if direct is not None:
            return direct
        inverse = self._effective((target, source), at)
        if inverse is None:
            raise ConfigurationError(f"no exchange rate from {source} to {target}")
        with localcontext() as ctx:
            ctx.prec = 34
            return Decimal(1) / inverse

    def convert(self, micros: int, source: str, target: str, at: datetime) -> int:
        """``micros`` of ``source`` in micro-units of ``target``, rounded up."""
        if source == target:
            return micros
        with localcontext() as ctx:
            ctx.prec = 50
            exact = Decimal(micros) * self.rate(source, target, at)
        return int(exact.to_integral_value(rounding=ROUND_CEILING))

    def _effective(self, pair: tuple[str, str], at: datetime) -> Decimal | None:
        rates = self._by_pair.get(pair)
        if not rates:
            return None
        index = bisect_right(self._starts[pair], at) - 1
        return rates[max(index, 0)].rate


#: No rates at all: every conversion but the identity is a configuration error.
NO_RATES = Rates()
