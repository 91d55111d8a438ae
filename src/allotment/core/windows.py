"""Budget windows: which period a given instant falls in.

A budget resets on a schedule (every local day, every billing cycle, never…).
This module answers one question for the engine and the stores: for an
instant ``at``, which period is it in, when does that period roll over, and
which integer counter bucket should usage at ``at`` be charged to.

Everything here is pure: the time is always an argument, nothing reads the
clock, and every returned datetime is timezone-aware UTC so callers never
compare wall-clock times by accident.

Calendar periods are found by guessing the period index from the local wall
clock and then nudging it by one until ``start <= at < end`` holds. The nudge
makes DST gaps and folds at midnight (Santiago, Havana, Beirut…) come out
right without special cases, and keeps the work O(1) however far ``at`` is
from any anchor.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from allotment.errors import ValidationError

__all__ = ["MAX_ROLLING_SECONDS", "Span", "Window", "WindowKind"]

MAX_ROLLING_SECONDS = 10 * 365 * 86_400
"""Longest rolling window (ten 365-day years); longer is surely a typo."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_UTC_ZONE = ZoneInfo("UTC")
_CYCLE_MONTHS = {"month": 1, "year": 12}
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3_600, "d": 86_400}
_LENGTH = re.compile(r"([0-9]{1,12})([smhd]?)", re.ASCII)
_SPEC_KEYS = frozenset({"kind", "tz", "seconds", "anchor", "cycle", "start", "end"})


class WindowKind(StrEnum):
    """How a budget's period is laid out in time."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"
    BILLING = "billing"
    ROLLING = "rolling"
    LIFETIME = "lifetime"


_CALENDAR_KINDS = frozenset({WindowKind.DAY, WindowKind.WEEK, WindowKind.MONTH, WindowKind.YEAR})


@dataclass(frozen=True, slots=True)
class Span:
    """The period containing one instant, and the counter buckets it covers.

    Attributes:
        start: inclusive start (UTC); None for lifetime.
        end: exclusive end (UTC); None for lifetime; ``at`` itself for rolling.
        resets_at: when the limit next frees up: ``end`` for calendar and
            billing periods, the moment the oldest counted bucket leaves a
            rolling window, None for lifetime.
        bucket: counter bucket (epoch seconds) to charge usage at ``at`` to.
        first_bucket: lowest bucket that still counts at ``at``; equal to
            ``bucket`` for every kind except rolling.
    """

    start: datetime | None
    end: datetime | None
    resets_at: datetime | None
    bucket: int
    first_bucket: int


_LIFETIME_SPAN = Span(start=None, end=None, resets_at=None, bucket=0, first_bucket=0)


@dataclass(frozen=True, slots=True)
class Window:
    """A validated window definition; ``span(at)`` places an instant in it.

    Instances are immutable values (safe to share between threads and to use
    as dict keys). Each one remembers its most recent calendar span so the
    hot path, many authorizations inside the same period, costs a couple of
    comparisons.

    Raises:
        ValidationError: on construction, naming the offending field
            (``window.kind``, ``window.tz``, ``window.seconds``, …).
    """

    kind: WindowKind
    tz: str = "UTC"
    seconds: int | None = None
    anchor: datetime | None = None
    cycle: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    _zone: ZoneInfo = field(default=_UTC_ZONE, init=False, repr=False, compare=False)
    _anchor_local: datetime = field(default=_EPOCH, init=False, repr=False, compare=False)
    _last: tuple[datetime, datetime, Span] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        kind = _check_kind(self.kind, "window.kind")
        object.__setattr__(self, "kind", kind)
        _check_belongs(self)
        object.__setattr__(self, "_zone", _check_tz(self.tz))
        if kind is WindowKind.ROLLING:
            _check_seconds(self.seconds)
        elif kind is WindowKind.BILLING:
            self._init_billing()

    def _init_billing(self) -> None:
        """Validate billing fields, store them as UTC and precompute what is fixed."""
        if self.anchor is not None or self.cycle is not None:
            if self.start is not None or self.end is not None:
                field_ = "window.start" if self.start is not None else "window.end"
                raise ValidationError(field_, "give either anchor and cycle or start and end")
            anchor = _check_instant(self.anchor, "window.anchor")
            if not isinstance(self.cycle, str) or self.cycle not in _CYCLE_MONTHS:
                raise ValidationError("window.cycle", "must be 'month' or 'year'")
            object.__setattr__(self, "anchor", anchor)
            object.__setattr__(self, "_anchor_local", anchor.astimezone(self._zone))
            return
        if self.start is None and self.end is None:
            raise ValidationError("window.anchor", "billing needs anchor+cycle or start+end")
        start = _check_instant(self.start, "window.start")
        end = _check_instant(self.end, "window.end")
        if end <= start:
            raise ValidationError("window.end", "must be after start")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        bucket = _epoch_seconds(start)
        object.__setattr__(self, "_last", (start, end, Span(start, end, end, bucket, bucket)))

    def span(self, at: datetime) -> Span | None:
        """Return the period containing ``at``.

        Args:
            at: any timezone-aware instant; its zone does not matter.

        Returns:
            The span, or None only for an explicit billing period that does
            not contain ``at``.

        Raises:
            ValidationError: ``at`` is naive, not a datetime, or so close to
                the ends of the datetime range that its period cannot exist.
        """
        last = self._last
        if last is not None:
            try:
                if last[0] <= at < last[1]:
                    return last[2]
            except TypeError:
                pass  # a naive instant or not a datetime: _require_aware names it
        _require_aware(at, "at")
        try:
            return self._compute(at)
        except (OverflowError, ValueError) as exc:
            raise ValidationError("at", "outside the supported date range") from exc

    def _compute(self, at: datetime) -> Span | None:
        """Work out the span on a cache miss; the cache is refreshed for calendar kinds."""
        kind = self.kind
        if kind is WindowKind.ROLLING:
            return self._rolling_span(at)
        if kind is WindowKind.LIFETIME:
            return _LIFETIME_SPAN
        if kind is WindowKind.BILLING and self.anchor is None:
            return None  # explicit period; the cache already held its only span
        start, end = self._locate(at)
        bucket = _epoch_seconds(start)
        result = Span(start=start, end=end, resets_at=end, bucket=bucket, first_bucket=bucket)
        object.__setattr__(self, "_last", (start, end, result))
        return result

    @property
    def granularity(self) -> int:
        """Seconds between counter buckets: N/60 for rolling windows, else 0 (one bucket)."""
        return max(1, self.seconds // 60) if self.seconds is not None else 0

    def frees_at(self, buckets: Sequence[tuple[int, int]], need: int) -> datetime | None:
        """When ``need`` base units of a rolling window's ``buckets`` (bucket, amount),
        oldest first, have left it: a bucket leaves once the window's first bucket is
        past it. None if they never free that much (or the window does not roll)."""
        if self.seconds is None or self.kind is not WindowKind.ROLLING:
            return None
        freed = 0
        for bucket, amount in buckets:
            freed += amount
            if freed >= need:
                return _EPOCH + timedelta(0, bucket + self.granularity + self.seconds)
        return None

    def _rolling_span(self, at: datetime) -> Span:
        """Slide an N-second window; buckets are N/60 seconds so a window spans ~60 counters."""
        seconds = self.seconds
        assert seconds is not None  # guaranteed by __post_init__
        grain = self.granularity
        now = _epoch_seconds(at)
        first = (now - seconds) // grain * grain
        end = at if at.tzinfo is UTC else at.astimezone(UTC)
        # Positional timedelta/Span arguments: this runs on every authorization.
        return Span(
            end - timedelta(0, seconds),  # start
            end,
            _EPOCH + timedelta(0, first + grain + seconds),  # resets_at: oldest bucket leaves
            now // grain * grain,  # bucket
            first,  # first_bucket
        )

    def _locate(self, at: datetime) -> tuple[datetime, datetime]:
        """Find index k with boundary(k) <= at < boundary(k + 1): guess, then nudge."""
        guess, boundary = self._indexing()
        k = guess(at.astimezone(self._zone))
        start = boundary(k)
        while at < start:
            k -= 1
            start = boundary(k)
        end = boundary(k + 1)
        while at >= end:
            k += 1
            start, end = end, boundary(k + 1)
        return start, end

    def _indexing(self) -> tuple[Callable[[datetime], int], Callable[[int], datetime]]:
        """Return (guess index from local time, UTC start of period index) for this kind."""
        zone = self._zone
        if self.kind is WindowKind.DAY:
            return date.toordinal, lambda k: _midnight(k, zone)
        if self.kind is WindowKind.WEEK:
            # Ordinal 1 (0001-01-01) is a Monday, so week k is ordinals 7k+1 … 7k+7.
            return lambda local: (local.toordinal() - 1) // 7, lambda k: _midnight(7 * k + 1, zone)
        if self.kind is WindowKind.MONTH:
            return lambda local: local.year * 12 + local.month - 1, lambda k: _month_start(k, zone)
        if self.kind is WindowKind.YEAR:
            return lambda local: local.year, lambda k: _utc(datetime(k, 1, 1, tzinfo=zone))
        return self._cycle_index, self._cycle_start

    def _cycle_index(self, local: datetime) -> int:
        """Whole cycles between the anchor's month and ``local``'s month (may be one off)."""
        anchor = self._anchor_local
        months = (local.year - anchor.year) * 12 + local.month - anchor.month
        return months // self._months_per_cycle()

    def _months_per_cycle(self) -> int:
        return _CYCLE_MONTHS[self.cycle or "month"]  # cycle is validated; "or" is for mypy

    def _cycle_start(self, k: int) -> datetime:
        """Anchor wall time k cycles on, day clamped per target month (never cumulatively)."""
        anchor = self._anchor_local
        total = anchor.year * 12 + anchor.month - 1 + k * self._months_per_cycle()
        year, month0 = divmod(total, 12)
        day = min(anchor.day, calendar.monthrange(year, month0 + 1)[1])
        return _utc(anchor.replace(year=year, month=month0 + 1, day=day))

    @classmethod
    def parse(cls, spec: str | Mapping[str, object], field: str = "window") -> Window:
        """Build a window from config text or a JSON/YAML mapping.

        Args:
            spec: ``"day"``, ``"day@Europe/Berlin"``, ``"rolling:15m"``,
                ``"lifetime"``…, or a mapping with keys ``kind``, ``tz``,
                ``seconds``, ``anchor``, ``cycle``, ``start``, ``end``
                (datetimes as aware datetimes or ISO 8601 text with offset).
            field: dotted name of where the spec came from, used in errors.

        Raises:
            ValidationError: anything malformed, with ``field`` as prefix.
        """
        value: object = spec  # callers may pass anything from a config file
        try:
            if isinstance(value, str):
                return _parse_text(cls, value)
            if isinstance(value, Mapping):
                return _parse_mapping(cls, value)
        except ValidationError as exc:
            raise _reprefix(exc, field) from None
        raise ValidationError(field, "must be a string or a mapping")

    def to_spec(self) -> dict[str, object]:
        """Return a JSON-safe mapping that ``parse`` turns back into an equal window."""
        spec: dict[str, object] = {"kind": self.kind.value}
        if self.kind in _CALENDAR_KINDS or self.anchor is not None:
            spec["tz"] = self.tz
        if self.seconds is not None:
            spec["seconds"] = self.seconds
        for name in ("anchor", "cycle", "start", "end"):
            value = getattr(self, name)
            if value is not None:
                spec[name] = value.isoformat() if isinstance(value, datetime) else value
        return spec

    def describe(self) -> str:
        """Return short human text for logs, the CLI and the dashboard."""
        if self.kind in _CALENDAR_KINDS:
            return f"{self.kind.value} ({self.tz})"
        if self.kind is WindowKind.ROLLING:
            return f"rolling {self.seconds}s"
        if self.kind is WindowKind.LIFETIME:
            return "lifetime"
        if self.anchor is None:
            assert self.start is not None and self.end is not None
            return f"billing {self.start.isoformat()} to {self.end.isoformat()}"
        zone = "" if self.tz == "UTC" else f" ({self.tz})"
        return f"billing {self.cycle}ly from {self.anchor.isoformat()}{zone}"


# --- period arithmetic ------------------------------------------------------


def _epoch_seconds(at: datetime) -> int:
    """Floor of the Unix time, exact for negative and fractional instants (no floats)."""
    return (at - _EPOCH) // _SECOND


def _utc(local: datetime) -> datetime:
    return local.astimezone(UTC)


def _midnight(ordinal: int, zone: ZoneInfo) -> datetime:
    """First instant of a local day; fold=0 maps a skipped midnight to the transition."""
    day = date.fromordinal(ordinal)
    return _utc(datetime(day.year, day.month, day.day, tzinfo=zone))


def _month_start(k: int, zone: ZoneInfo) -> datetime:
    year, month0 = divmod(k, 12)
    return _utc(datetime(year, month0 + 1, 1, tzinfo=zone))


# --- validation -------------------------------------------------------------


def _require_aware(value: object, field_: str) -> datetime:
    if not isinstance(value, datetime):
        raise ValidationError(field_, "must be a timezone-aware datetime")
    if value.utcoffset() is None:
        raise ValidationError(field_, "must be timezone-aware, not naive")
    return value


def _check_instant(value: object, field_: str) -> datetime:
    if value is None:
        raise ValidationError(field_, "is required")
    return _require_aware(value, field_).astimezone(UTC)


def _check_kind(value: object, field_: str) -> WindowKind:
    if isinstance(value, str):
        try:
            return WindowKind(value)
        except ValueError:
            pass
    choices = ", ".join(kind.value for kind in WindowKind)
    raise ValidationError(field_, f"must be one of {choices}")


def _check_tz(tz: object) -> ZoneInfo:
    if not isinstance(tz, str) or not tz:
        raise ValidationError("window.tz", "must be a non-empty IANA time zone name")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError("window.tz", f"unknown time zone {tz!r}") from None


def _check_seconds(seconds: object) -> None:
    if seconds is None:
        raise ValidationError("window.seconds", "is required for a rolling window")
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise ValidationError("window.seconds", "must be an integer")
    if not 1 <= seconds <= MAX_ROLLING_SECONDS:
        raise ValidationError("window.seconds", f"must be between 1 and {MAX_ROLLING_SECONDS}")


def _check_belongs(window: Window) -> None:
    """Reject fields that mean nothing for the kind, rather than silently ignoring them."""
    kind = window.kind
    if kind is not WindowKind.ROLLING and window.seconds is not None:
        raise ValidationError("window.seconds", f"not allowed for a {kind.value} window")
    if kind is not WindowKind.BILLING:
        for name in ("anchor", "cycle", "start", "end"):
            if getattr(window, name) is not None:
                raise ValidationError(f"window.{name}", f"not allowed for a {kind.value} window")
    zoned = kind in _CALENDAR_KINDS or (kind is WindowKind.BILLING and window.start is None)
    if not zoned and window.tz != "UTC":
        raise ValidationError("window.tz", "this window does not use a time zone")


# --- parsing ----------------------------------------------------------------


def _reprefix(exc: ValidationError, prefix: str) -> ValidationError:
    """Swap the default ``window`` prefix for the caller's field name."""
    head, _, rest = exc.field.partition(".")
    if head == "window":
        return ValidationError(f"{prefix}.{rest}" if rest else prefix, exc.message)
    return ValidationError(f"{prefix}.{exc.field}", exc.message)


def _parse_text(cls: type[Window], text: str) -> Window:
    if text.startswith("rolling:"):
        return cls(kind=WindowKind.ROLLING, seconds=_parse_length(text.removeprefix("rolling:")))
    name, at_sign, tz = text.partition("@")
    return cls(kind=_check_kind(name, "window.kind"), tz=tz if at_sign else "UTC")


def _parse_length(text: str) -> int:
    match = _LENGTH.fullmatch(text)
    if match is None:
        raise ValidationError("window.seconds", f"bad rolling length {text!r}; try 3600, 15m, 1h")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def _parse_mapping(cls: type[Window], spec: Mapping[Any, object]) -> Window:
    for key in spec:
        if not isinstance(key, str):
            raise ValidationError("window", "keys must be strings")
        if key not in _SPEC_KEYS:
            raise ValidationError(f"window.{key}", "unknown key")
    if spec.get("kind") is None:
        raise ValidationError("window.kind", "is required")
    tz = _get_str(spec, "tz")
    return cls(
        kind=_check_kind(spec["kind"], "window.kind"),
        tz="UTC" if tz is None else tz,
        seconds=_get_int(spec, "seconds"),
        anchor=_get_instant(spec, "anchor"),
        cycle=_get_str(spec, "cycle"),
        start=_get_instant(spec, "start"),
        end=_get_instant(spec, "end"),
    )


def _get_str(spec: Mapping[Any, object], key: str) -> str | None:
    value = spec.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ValidationError(f"window.{key}", "must be a string")


def _get_int(spec: Mapping[Any, object], key: str) -> int | None:
    value = spec.get(key)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValidationError(f"window.{key}", "must be an integer")


def _get_instant(spec: Mapping[Any, object], key: str) -> datetime | None:
    """Accept an aware datetime or ISO 8601 text; the offset is mandatory either way."""
    value = spec.get(key)
    if value is None or isinstance(value, datetime):
        return value  # awareness is checked by Window itself
    if not isinstance(value, str):
        raise ValidationError(f"window.{key}", "must be an ISO 8601 string or a datetime")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"window.{key}", f"not an ISO 8601 datetime: {value!r}") from None
    if parsed.utcoffset() is None:
        raise ValidationError(f"window.{key}", "needs a UTC offset or Z")
    return parsed
