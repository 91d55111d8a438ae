"""What a call used, and the meters budgets count it with.

Every usage figure is a non-negative integer. Audio is counted in
milliseconds (``audio_ms``); the boundary also accepts ``audio_seconds`` as a
decimal. Cost is integer micro-units of the deployment currency, or ``None``
when nobody has priced the call yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from operator import attrgetter
from typing import Any

from allotment.core.money import MAX_AMOUNT, MICROS, check_amount, decimal_to_units
from allotment.errors import ValidationError

__all__ = ["USAGE_FIELDS", "Meter", "Usage", "parse_usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Resources one call used (or is estimated to use).

    ``input_tokens`` counts every input token: cached, cache-write and audio
    input tokens are parts of it, priced at their own rates. Likewise
    reasoning and audio output tokens are parts of ``output_tokens``.
    ``requests`` defaults to 1: every call is one request unless a batch says
    otherwise.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    audio_ms: int = 0
    images: int = 0
    requests: int = 1
    credits: int = 0
    cost_micros: int | None = None

    def __post_init__(self) -> None:
        values = _int_values(self)
        # Fast path for the common, valid case; the slow path names the bad field.
        if set(map(type, values)) != _INT_ONLY or min(values) < 0 or max(values) > MAX_AMOUNT:
            for name in _INT_FIELDS:
                check_amount(getattr(self, name), f"usage.{name}")
        if self.cost_micros is not None:
            check_amount(self.cost_micros, "usage.cost_micros")

    @property
    def tokens(self) -> int:
        """Input plus output tokens, what a ``tokens`` budget counts."""
        return self.input_tokens + self.output_tokens

    def as_tuple(self) -> tuple[int | None, ...]:
        """Every field as a tuple of plain values (for fingerprints)."""
        return (*_int_values(self), self.cost_micros)

    def to_dict(self) -> dict[str, int | None]:
        """All fields, JSON-safe."""
        return {name: getattr(self, name) for name in _ALL_FIELDS}

    def with_cost(self, cost_micros: int) -> Usage:
        """The same usage, priced (built directly: ``dataclasses.replace`` is slow)."""
        return Usage(
            self.input_tokens, self.output_tokens, self.cached_input_tokens,
            self.cache_write_tokens, self.reasoning_tokens, self.input_audio_tokens,
            self.output_audio_tokens, self.audio_ms, self.images, self.requests, self.credits,
            cost_micros,
        )  # fmt: skip


_ALL_FIELDS = tuple(f.name for f in fields(Usage))
#: every usage field, in declaration order (cost_micros last): the stores' column order
USAGE_FIELDS = _ALL_FIELDS
_INT_FIELDS = tuple(name for name in _ALL_FIELDS if name != "cost_micros")
_FIELD_SET = frozenset(_ALL_FIELDS)
_int_values = attrgetter(*_INT_FIELDS)
_INT_ONLY = {int}


def parse_usage(data: Mapping[str, Any] | Usage | None, field: str = "usage") -> Usage:
    """Build a ``Usage`` from untrusted input, naming the bad field on error.

    Accepts every ``Usage`` field plus two human forms: ``audio_seconds``
    (decimal, millisecond resolution) and ``cost`` (decimal currency units).
    """
    if data is None:
        return Usage()
    if isinstance(data, Usage):
        return data
    if not isinstance(data, Mapping):
        raise ValidationError(field, f"must be an object, got {type(data).__name__}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in _FIELD_SET:
            values[key] = value
        elif key == "audio_seconds":
            values["audio_ms"] = decimal_to_units(value, 1000, f"{field}.audio_seconds")
        elif key == "cost":
            values["cost_micros"] = decimal_to_units(value, MICROS, f"{field}.cost")
        else:
            raise ValidationError(f"{field}.{key}", "is not a known usage field")
    try:
        return Usage(**values)
    except ValidationError as exc:  # Usage validates; name the field as the caller wrote it
        raise ValidationError(field + exc.field.removeprefix("usage"), exc.message) from None


class Meter(StrEnum):
    """What a budget counts."""

    TOKENS = "tokens"
    INPUT_TOKENS = "input_tokens"
    OUTPUT_TOKENS = "output_tokens"
    COST = "cost"
    REQUESTS = "requests"
    AUDIO_SECONDS = "audio_seconds"
    CREDITS = "credits"

    @property
    def scale(self) -> int:
        """Base units per human unit: micro-units for cost, ms for audio."""
        return _SCALES.get(self, 1)

    def amount(self, usage: Usage) -> int:
        """How much of this meter ``usage`` consumes, in base units."""
        if self is Meter.COST:
            return usage.cost_micros or 0
        amount: int = _AMOUNTS[self](usage)
        return amount

    @classmethod
    def parse(cls, value: object, field: str = "meter") -> Meter:
        """The meter named ``value``, or a ValidationError listing the choices."""
        try:
            return cls(str(value)) if isinstance(value, str) else cls(value)  # type: ignore[arg-type]
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise ValidationError(field, f"unknown meter {value!r} (one of {choices})") from None


_SCALES = {Meter.COST: MICROS, Meter.AUDIO_SECONDS: 1000}
_AMOUNTS = {
    Meter.TOKENS: lambda u: u.input_tokens + u.output_tokens,
    Meter.INPUT_TOKENS: lambda u: u.input_tokens,
    Meter.OUTPUT_TOKENS: lambda u: u.output_tokens,
    Meter.REQUESTS: lambda u: u.requests,
    Meter.AUDIO_SECONDS: lambda u: u.audio_ms,
    Meter.CREDITS: lambda u: u.credits,
}
