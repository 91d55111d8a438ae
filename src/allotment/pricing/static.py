"""A pricer from an explicit table of per-million-token rates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

from allotment.core.money import MICROS, parse_decimal
from allotment.core.usage import Usage
from allotment.errors import ValidationError
from allotment.pricing.base import Price

__all__ = ["ModelRate", "StaticPricer"]


def _decimal(value: object, field: str) -> Decimal:
    result = parse_decimal(value, field)
    if result < 0:
        raise ValidationError(field, "must be a finite, non-negative price")
    return result


_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class ModelRate:
    """Prices in currency units: per million tokens, per audio minute, per request.

    Cached and cache-write tokens are part of ``input_tokens`` and priced at
    their own rate when one is given (else at the input rate); reasoning
    tokens are part of ``output_tokens``.
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    audio_minute: Decimal = Decimal(0)
    per_request: Decimal = Decimal(0)

    def cost(self, usage: Usage) -> Decimal:
        """The exact cost as a Decimal of currency units."""
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        written = min(usage.cache_write_tokens, usage.input_tokens - cached)
        plain = usage.input_tokens - cached - written
        tokens = (
            plain * self.input
            + cached * (self.input if self.cached_input is None else self.cached_input)
            + written * (self.input if self.cache_write is None else self.cache_write)
            + usage.output_tokens * self.output
        ) / _MILLION
        audio = Decimal(usage.audio_ms) / 60_000 * self.audio_minute
        return tokens + audio + usage.requests * self.per_request

    def cost_micros(self, usage: Usage) -> int:
        """The cost rounded up to a whole micro-unit (never undercharge)."""
        return int((self.cost(usage) * MICROS).to_integral_value(rounding=ROUND_CEILING))

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], field: str = "rate") -> ModelRate:
        """A rate from decimal strings or integers, naming a bad field."""
        known = ("input", "output", "cached_input", "cache_write", "audio_minute", "per_request")
        for key in spec:
            if key not in known:
                raise ValidationError(f"{field}.{key}", "is not a rate field")
        values: dict[str, Decimal] = {}
        for key in known:
            if spec.get(key) is not None:
                values[key] = _decimal(spec[key], f"{field}.{key}")
        for key in ("input", "output"):
            if key not in values:
                raise ValidationError(f"{field}.{key}", "is required")
        return cls(**values)

    def describe(self) -> dict[str, str]:
        """The rates, JSON-safe, for the price record on events."""
        return {
            name: str(getattr(self, name))
            for name in ("input", "output", "cached_input", "cache_write", "audio_minute",
                         "per_request")
            if getattr(self, name) is not None
        }  # fmt: skip


class StaticPricer:
    """Prices ``provider/model`` from a fixed table; unknown models get None."""

    def __init__(self, rates: Mapping[str, ModelRate], currency: str = "USD") -> None:
        self._rates = {key.lower(): rate for key, rate in rates.items()}
        self._currency = currency

    def price(
        self, provider: str, model: str, usage: Usage, at: datetime, tenant: str | None = None
    ) -> Price | None:
        """Price from the table, looking up ``provider/model`` then ``model``."""
        rate = self._rates.get(f"{provider}/{model}".lower()) or self._rates.get(model.lower())
        if rate is None:
            return None
        return Price(rate.cost_micros(usage), self._currency, "override", {"rate": rate.describe()})
