"""Provider responses read as allotment ``Usage``: ``usage_from`` and ``StreamUsage``.

A usage is matched to a shape (``shapes.SHAPES``) by its fields, never by the
provider's name alone. The shape that reads the most of the usage's figures
wins, and ties go to the provider's family (on real responses, shapes that
tie read the same figures). A shape is ruled out when the usage has a top-level figure
(``*tokens``, ``*seconds``) that it does not read, so an unknown figure is
refused, never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_CEILING, Decimal
from typing import Any

from allotment.core.money import MAX_AMOUNT, check_amount
from allotment.core.usage import Usage
from allotment.errors import ValidationError
from allotment.providers.shapes import (
    ANTHROPIC_PROVIDERS,
    FIGURE_SUFFIXES,
    ROOTS,
    SHAPES,
    Path,
    Shape,
)

__all__ = ["StreamUsage", "usage_from"]

#: fields that make an object a usage object itself (or a whisper response)
_MARKERS = frozenset(key for shape in SHAPES for key in shape.required)
_HINT = (
    "a stream chunk before the last? OpenAI chat streams report usage only with "
    "stream_options={'include_usage': True}"
)
_NO_USAGE = f"is missing: this response or event reports no usage ({_HINT})"


def usage_from(provider: str, response: object) -> Usage:
    """The ``Usage`` a provider's response reports, counted allotment's way.

    Reads OpenAI chat completions (and the final chunk of a stream with
    ``include_usage``), Responses (and its ``response.completed`` event),
    embeddings and transcriptions; Anthropic messages and their
    ``message_start`` / ``message_delta`` events; and the same shapes from
    OpenAI-compatible providers, Bedrock and Vertex. A single stream event
    gives what that event carries; use ``StreamUsage`` for a whole stream.

    Args:
        provider: the provider's name (``openai``, ``anthropic``, ``azure``,
            ``groq``, ``bedrock``, ...). The fields decide the shape; the name
            only settles ties.
        response: the SDK object, its JSON as a dict, or the usage object alone.

    Returns:
        The usage with ``cost_micros=None``: pricing is the governor's job.

    Raises:
        ValidationError: no usage, a shape nobody knows, a figure no shape
            reads, or a negative or non-integer count. ``field`` is the path
            of the offending value (``usage``, ``message.usage.input_tokens``).
    """
    family = _family(provider)
    located = _locate(response)
    if located is None:
        raise ValidationError("usage", _NO_USAGE)
    where, found = located
    usage = _plain(found, where)
    return _read(_choose(usage, family, _kind(response), where), usage, where)


class StreamUsage:
    """The usage of a streamed call, fed one event or chunk at a time.

    Stream usage is cumulative with every provider, never additive: an
    Anthropic ``message_delta`` repeats the running total of output tokens,
    and a final OpenAI chunk holds the whole call. So each figure an event
    reports replaces the one before, as the Anthropic SDK's own accumulator
    does. Events without usage are skipped; one with a bad usage raises at once.

    Args:
        provider: as for ``usage_from``.
    """

    __slots__ = ("_family", "_merged")

    def __init__(self, provider: str) -> None:
        self._family = _family(provider)
        self._merged: dict[str, Any] = {}

    def add(self, event: object) -> None:
        """Take one stream event or chunk (SDK object or dict) into account.

        Raises:
            ValidationError: the event carries usage that cannot be read.
        """
        located = _locate(event)
        if located is None:
            return
        where, found = located
        usage = _plain(found, where)
        _read(_choose(usage, self._family, _kind(event), where), usage, where)
        self._merged |= usage

    @property
    def usage(self) -> Usage:
        """The usage of the stream so far: the whole call once the last event is in.

        Raises:
            ValidationError: no event reported usage, or the events together
                lack a figure a whole call has (e.g. no ``message_start``).
        """
        if not self._merged:
            raise ValidationError("usage", f"no event of the stream reported usage ({_HINT})")
        return _read(_choose(self._merged, self._family, None, "usage"), self._merged, "usage")


def _family(provider: object) -> str:
    if not isinstance(provider, str) or not provider:
        raise ValidationError("provider", "must be a provider name such as 'openai' or 'anthropic'")
    return "anthropic" if provider.lower() in ANTHROPIC_PROVIDERS else "openai"


def _at(data: object, path: Path) -> Any:
    """The value at ``path`` in a dict or an SDK object, None when absent."""
    for key in path:
        data = data.get(key) if isinstance(data, Mapping) else getattr(data, key, None)
        if data is None:
            return None
    return data


def _kind(event: object) -> str | None:
    kind = _at(event, ("type",))
    return kind if isinstance(kind, str) else None


def _locate(response: object) -> tuple[str, object] | None:
    """Where the usage is (its path, for error messages) and the usage object."""
    for root in ROOTS:
        found = _at(response, root)
        if found is not None:
            return ".".join(root), found
    if any(_at(response, (key,)) is not None for key in _MARKERS):
        return "usage", response
    return None


def _plain(usage: object, where: str) -> dict[str, Any]:
    """The usage as a plain dict without None values (pydantic models dumped)."""
    if isinstance(usage, Mapping):
        return {key: value for key, value in usage.items() if value is not None}
    dump = getattr(usage, "model_dump", None)
    if not callable(dump):
        raise ValidationError(where, f"must be a usage object, got {type(usage).__name__}")
    plain: dict[str, Any] = dump(by_alias=True, exclude_none=True, warnings=False)
    return plain


def _choose(usage: Mapping[str, Any], family: str, event: str | None, where: str) -> Shape:
    """The shape that reads most of ``usage``; ties go to the provider's family."""
    best: Shape | None = None
    best_rank = (-1, False)
    for shape in SHAPES:
        score = _fit(shape, usage, event)
        if score is not None and (score, shape.family == family) > best_rank:
            best, best_rank = shape, (score, shape.family == family)
    if best is None:
        raise _unfit(usage, where)
    return best


def _fit(shape: Shape, usage: Mapping[str, Any], event: str | None) -> int | None:
    """How many of ``usage``'s figures ``shape`` reads, or None if it cannot read them all."""
    if shape.event is not None and shape.event != event:
        return None
    if shape.kind is not None and usage.get("type") != shape.kind:
        return None
    if any(usage.get(key) is None for key in shape.required):
        return None
    if any(_is_figure(key) and key not in shape.known for key in usage):
        return None
    return sum(_at(usage, path) is not None for path in shape.paths)


def _is_figure(key: object) -> bool:
    return isinstance(key, str) and key.endswith(FIGURE_SUFFIXES)


def _unfit(usage: Mapping[str, Any], where: str) -> ValidationError:
    if not usage:
        return ValidationError(where, _NO_USAGE)
    known = {key for shape in SHAPES for key in shape.known}
    unread = sorted(str(k) for k in usage if _is_figure(k) and k not in known)
    if unread:
        message = "is a figure no known usage shape reads; refused rather than undercounted"
        return ValidationError(f"{where}.{unread[0]}", message)
    fields = ", ".join(sorted(str(k) for k in usage)[:8])
    return ValidationError(
        where,
        f"is not an OpenAI or Anthropic usage (it has {fields}; expected prompt_tokens "
        "and completion_tokens, or input_tokens and output_tokens)",
    )


def _read(shape: Shape, usage: Mapping[str, Any], where: str) -> Usage:
    """Apply ``shape``'s rows to ``usage``: checked figures, summed per field."""
    values: dict[str, int] = {}
    for name, alternatives in shape.reads:
        for path in alternatives:
            value = _at(usage, path)
            if value is not None:
                amount = _amount(name, value, ".".join((where, *path)))
                target = "audio_ms" if name == "audio_seconds" else name
                values[target] = values.get(target, 0) + amount
                break
    if shape.total is not None and shape.total in usage:
        _reasoning_outside(values, check_amount(usage[shape.total], f"{where}.{shape.total}"))
    return Usage(**values)


def _reasoning_outside(values: dict[str, int], total: int) -> None:
    """Count reasoning in the output when the provider reported it beside it.

    xAI leaves reasoning tokens out of ``completion_tokens`` but in
    ``total_tokens``; OpenAI counts them inside. The total tells which: only
    an exact match moves them, so a total that counts something else
    (Mistral's audio) changes nothing.
    """
    reasoning = values.get("reasoning_tokens", 0)
    counted = values.get("input_tokens", 0) + values.get("output_tokens", 0)
    if reasoning and total == counted + reasoning:
        values["output_tokens"] = values.get("output_tokens", 0) + reasoning


def _amount(name: str, value: object, path: str) -> int:
    return _milliseconds(value, path) if name == "audio_seconds" else check_amount(value, path)


def _milliseconds(seconds: object, path: str) -> int:
    """A provider's duration in seconds (a float on the wire) as whole ms, rounded up."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float | Decimal):
        raise ValidationError(path, f"must be a number of seconds, got {type(seconds).__name__}")
    exact = Decimal(repr(seconds)) if isinstance(seconds, float) else Decimal(seconds)
    if not exact.is_finite() or exact < 0 or exact > MAX_AMOUNT:
        raise ValidationError(path, f"must be a non-negative, finite duration, got {seconds!r}")
    return check_amount(int((exact * 1000).to_integral_value(rounding=ROUND_CEILING)), path)
