"""What a call used, and the meters budgets count it with.

Every usage figure is a non-negative integer. Audio is counted in
milliseconds (``audio_ms``); the boundary also accepts ``audio_seconds`` as a
decimal. Cost is integer micro-units of the deployment currency, or ``None``
when nobody has priced the call yet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from operator import itemgetter
from typing import Any, NamedTuple

from allotment.core.money import MAX_AMOUNT, MICROS, check_amount, decimal_to_units
from allotment.errors import ValidationError

__all__ = [
    "HELD_AMOUNTS",
    "METER_AMOUNTS",
    "USAGE_FIELDS",
    "Meter",
    "Usage",
    "parse_usage",
    "usage_from_row",
]


class _Fields(NamedTuple):
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


class Usage(_Fields):
    """Resources one call used (or is estimated to use).

    ``input_tokens`` counts every input token: cached, cache-write and audio
    input tokens are parts of it, priced at their own rates. Likewise
    reasoning and audio output tokens are parts of ``output_tokens``.
    ``requests`` defaults to 1: every call is one request unless a batch says
    otherwise.

    An immutable named tuple, checked when made: every figure a non-negative
    integer (``cost_micros`` may be None, unpriced). A tuple because four are
    made per call: a frozen dataclass took 1.7 µs to make, this takes 0.4.
    """

    __slots__ = ()

    def __new__(
        cls,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_input_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        input_audio_tokens: int = 0,
        output_audio_tokens: int = 0,
        audio_ms: int = 0,
        images: int = 0,
        requests: int = 1,
        credits: int = 0,
        cost_micros: int | None = None,
    ) -> Usage:
        values = (
            input_tokens, output_tokens, cached_input_tokens, cache_write_tokens,
            reasoning_tokens, input_audio_tokens, output_audio_tokens, audio_ms, images,
            requests, credits,
        )  # fmt: skip
        # Fast path for the common, valid case; the slow path names the bad field.
        if set(map(type, values)) != _INT_ONLY or min(values) < 0 or max(values) > MAX_AMOUNT:
            for name, value in zip(_INT_FIELDS, values, strict=True):
                check_amount(value, f"usage.{name}")
        if cost_micros is not None:
            check_amount(cost_micros, "usage.cost_micros")
        return usage_from_row((*values, cost_micros))

    @property
    def tokens(self) -> int:
        """Input plus output tokens, what a ``tokens`` budget counts."""
        return self.input_tokens + self.output_tokens

    def as_tuple(self) -> tuple[int | None, ...]:
        """Every field as a plain tuple (for fingerprints)."""
        return tuple(self)

    def to_dict(self) -> dict[str, int | None]:
        """All fields, JSON-safe."""
        return dict(zip(_ALL_FIELDS, self, strict=True))

    def with_cost(self, cost_micros: int) -> Usage:
        """The same usage, priced (the other figures were checked when it was made)."""
        if type(cost_micros) is not int or not 0 <= cost_micros <= MAX_AMOUNT:
            check_amount(cost_micros, "usage.cost_micros")  # raises, naming the field
        return usage_from_row((*self[:-1], cost_micros))  # cost_micros is last


_ALL_FIELDS: tuple[str, ...] = Usage._fields
#: every usage field, in declaration order (cost_micros last): the stores' column order
USAGE_FIELDS = _ALL_FIELDS
_INT_FIELDS = _ALL_FIELDS[:-1]
_INT_ONLY = {int}
_INT_FIELD_SET = frozenset(_INT_FIELDS)
_DEFAULTS: dict[str, int | None] = dict(Usage._field_defaults)
_WIDTH = len(_ALL_FIELDS)
assert _ALL_FIELDS[-1] == "cost_micros", "with_cost and the rollups expect cost_micros last"
_tuple_new = tuple.__new__


def usage_from_row(values: Sequence[int | None]) -> Usage:
    """A ``Usage`` from checked values in field order (``as_tuple``'s), unchecked.

    For figures validated before: a stored row, or a parsed dict. Usage's one
    positional codec: every shortcut past the constructor comes through here,
    where a row one field short (a field added to ``Usage``, a codec left
    behind) fails the assert instead of making a short tuple.
    """
    assert len(values) == _WIDTH, f"{len(values)} values for Usage's {_WIDTH} fields"
    # not Usage(*values), which checks again: 54k of 394k instructions a pair (bench.instructions)
    return _tuple_new(Usage, values)


def parse_usage(data: Mapping[str, Any] | Usage | None, field: str = "usage") -> Usage:
    """Build a ``Usage`` from untrusted input, naming the bad field on error.

    Accepts every ``Usage`` field plus two human forms: ``audio_seconds``
    (decimal, millisecond resolution) and ``cost`` (decimal currency units).
    """
    if type(data) is not dict:  # the usual form, spared the checks below
        if data is None:
            return Usage()
        if isinstance(data, Usage):
            return data
        if not isinstance(data, Mapping):
            raise ValidationError(field, f"must be an object, got {type(data).__name__}")
    values = _DEFAULTS.copy()
    for key, value in data.items():
        if key in _INT_FIELD_SET:
            if type(value) is not int or not 0 <= value <= MAX_AMOUNT:
                check_amount(value, f"{field}.{key}")
            values[key] = value
        elif key == "cost_micros":
            values[key] = None if value is None else check_amount(value, f"{field}.{key}")
        elif key == "audio_seconds":
            values["audio_ms"] = decimal_to_units(value, 1000, f"{field}.audio_seconds")
        elif key == "cost":
            values["cost_micros"] = decimal_to_units(value, MICROS, f"{field}.cost")
        else:
            raise ValidationError(f"{field}.{key}", "is not a known usage field")
    return usage_from_row(tuple(values.values()))


class Meter(StrEnum):
    """What a budget counts."""

    TOKENS = "tokens"
    INPUT_TOKENS = "input_tokens"
    OUTPUT_TOKENS = "output_tokens"
    COST = "cost"
    REQUESTS = "requests"
    AUDIO_SECONDS = "audio_seconds"
    CREDITS = "credits"
    #: leases in flight: a reservation holds one slot until it ends (``HELD_AMOUNTS``)
    CONCURRENCY = "concurrency"

    @property
    def scale(self) -> int:
        """Base units per human unit: micro-units for cost, ms for audio."""
        return _SCALES.get(self, 1)

    def amount(self, usage: Usage) -> int:
        """How much of this meter ``usage`` consumes, in base units."""
        return METER_AMOUNTS[self](usage)

    @classmethod
    def parse(cls, value: object, field: str = "meter") -> Meter:
        """The meter named ``value``, or a ValidationError listing the choices."""
        try:
            return cls(str(value)) if isinstance(value, str) else cls(value)  # type: ignore[arg-type]
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise ValidationError(field, f"unknown meter {value!r} (one of {choices})") from None


_SCALES = {Meter.COST: MICROS, Meter.AUDIO_SECONDS: 1000}
#: how much of each meter a usage consumes, in base units (the hot path's ``Meter.amount``)
METER_AMOUNTS: dict[Meter, Callable[[Usage], int]] = {
    Meter.TOKENS: lambda u: u.input_tokens + u.output_tokens,
    Meter.INPUT_TOKENS: itemgetter(_ALL_FIELDS.index("input_tokens")),
    Meter.OUTPUT_TOKENS: itemgetter(_ALL_FIELDS.index("output_tokens")),
    Meter.REQUESTS: itemgetter(_ALL_FIELDS.index("requests")),
    Meter.AUDIO_SECONDS: itemgetter(_ALL_FIELDS.index("audio_ms")),
    Meter.CREDITS: itemgetter(_ALL_FIELDS.index("credits")),
    Meter.COST: lambda u: u.cost_micros or 0,
    # What a call used takes no slot: a lease holds one only while it lasts.
    Meter.CONCURRENCY: lambda u: 0,
}
#: how much of each meter a reservation of an estimate holds: as used, but one slot of
#: a concurrency budget (engine.decide's amounts)
HELD_AMOUNTS: dict[Meter, Callable[[Usage], int]] = {
    **METER_AMOUNTS,
    Meter.CONCURRENCY: lambda u: 1,
}
