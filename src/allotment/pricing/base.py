"""The pricer protocol and the structured price record stored on events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from allotment.core.usage import Usage

__all__ = ["Price", "Pricer"]


@dataclass(slots=True)
class Price:
    """The cost of one call and where it came from.

    Attributes:
        amount_micros: integer micro-units of ``currency``.
        source: ``caller`` (passed in), ``override``, ``catalog``,
            ``fallback``, or ``missing`` (nobody could price it).
        detail: unit prices used and the catalog version, for explanations.
        known_model: False when no price exists for the model itself (a
            fallback stood in); ``unknown_model="deny"`` refuses those.
    """

    amount_micros: int
    currency: str
    source: str
    detail: dict[str, Any] = field(default_factory=dict)
    known_model: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, as stored on the ledger event."""
        out: dict[str, Any] = {
            "amount_micros": self.amount_micros,
            "currency": self.currency,
            "source": self.source,
        }
        if not self.known_model:
            out["unknown_model"] = True
        out.update(self.detail)
        return out


class Pricer(Protocol):
    """Prices a call's usage. Pure: the time of the call is an argument."""

    def price(
        self, provider: str, model: str, usage: Usage, at: datetime, tenant: str | None = None
    ) -> Price | None:
        """The price of ``usage`` on ``provider/model`` at ``at`` for ``tenant``.

        None means this pricer cannot price the call at all.
        """
        ...
