"""A pricer from an explicit table of per-million-token rates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal

from allotment.core.money import MICROS
from allotment.core.usage import Usage
from allotment.pricing.base import Price

__all__ = ["ModelRate", "StaticPricer"]

_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class ModelRate:
    """Prices in currency units per million tokens (and per request)."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    per_request: Decimal = Decimal(0)

    def cost_micros(self, usage: Usage) -> int:
        """Exact cost, rounded up to a whole micro-unit (never undercharge)."""
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        total = (
            (usage.input_tokens - cached) * self.input
            + cached * cached_rate
            + usage.output_tokens * self.output
        ) / _MILLION + usage.requests * self.per_request
        return int((total * MICROS).to_integral_value(rounding=ROUND_CEILING))


class StaticPricer:
    """Prices ``provider/model`` from a fixed table; unknown models get None."""

    def __init__(self, rates: Mapping[str, ModelRate], currency: str = "USD") -> None:
        self._rates = {key.lower(): rate for key, rate in rates.items()}
        self._currency = currency

    def price(self, provider: str, model: str, usage: Usage, at: datetime) -> Price | None:
        """Price from the table, looking up ``provider/model`` then ``model``."""
        rate = self._rates.get(f"{provider}/{model}".lower()) or self._rates.get(model.lower())
        if rate is None:
            return None
        return Price(rate.cost_micros(usage), self._currency, "override", {"model": model})
