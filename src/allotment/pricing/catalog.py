"""The price catalog: genai-prices' bundled data, overrides first, never zero.

Lookup order for a call on ``provider/model`` at time ``at`` for ``tenant``:

1. a tenant override, then a deployment override, in effect at ``at``
   (negotiated rates, self-hosted models, in-house providers);
2. the genai-prices catalog, with the price in effect at ``at`` (history,
   context-length tiers and time-of-day prices are the catalog's own);
3. a conservative fallback, flagged ``source="fallback"``: a configured rate,
   else the most expensive model the catalog knows for that provider, else
   the most expensive model of all. An unknown model is never priced at zero.

Only the bundled data is used: the package's network updater is never
started, so prices change when the package is upgraded, not behind your back.

Rounding: the catalog's exact Decimal dollar amount is rounded *up* to a whole
micro-unit once, at the end, so a call is never undercharged by rounding.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal, localcontext
from fnmatch import fnmatchcase
from functools import lru_cache
from importlib.metadata import version
from typing import Any, NamedTuple, cast

from genai_prices import Usage as GenaiUsage
from genai_prices import data_snapshot
from genai_prices.types import ModelInfo, ModelPrice, Provider, TieredPrices

from allotment.core.money import MICROS
from allotment.core.usage import Usage
from allotment.errors import ValidationError
from allotment.pricing.base import Price
from allotment.pricing.estimate import EstimateSettings, estimate_request
from allotment.pricing.static import ModelRate

__all__ = ["CATALOG_VERSION", "CatalogPricer", "PriceOverride", "resolve_model"]

CATALOG_VERSION = f"genai-prices {version('genai-prices')}"
_DATE_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8}|-\d{4})$")
_BEDROCK_REGION = re.compile(r"^(us|eu|apac|ap|ca|us-gov|global)\.(?=[a-z]+\.)")
_PROVIDER_ALIASES = {
    "bedrock": "aws",
    "amazon": "aws",
    "vertex": "google",
    "vertex_ai": "google",
    "gemini": "google",
    "azure_openai": "azure",
    "mistralai": "mistral",
}


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """A price that wins over the catalog from ``effective_from`` on.

    ``model`` and ``provider`` may use ``*`` globs; ``tenant=None`` applies to
    every tenant, a tenant's own override beats it.
    """

    model: str
    rate: ModelRate
    effective_from: datetime
    provider: str | None = None
    tenant: str | None = None

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], field: str = "override") -> PriceOverride:
        """An override from config: ``{model, provider?, tenant?, effective_from?, input, …}``."""
        if not isinstance(spec, Mapping):
            raise ValidationError(field, "must be an object")
        rest = dict(spec)
        model = rest.pop("model", None)
        if not isinstance(model, str) or not model:
            raise ValidationError(f"{field}.model", "is required (a model id or glob)")
        provider, tenant = rest.pop("provider", None), rest.pop("tenant", None)
        for key, value in (("provider", provider), ("tenant", tenant)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValidationError(f"{field}.{key}", "must be a non-empty string")
        since = _instant(rest.pop("effective_from", _EPOCH), f"{field}.effective_from")
        return cls(model, ModelRate.from_spec(rest, field), since, provider, tenant)

    def matches(self, provider: str, model: str, tenant: str | None, at: datetime) -> bool:
        """Whether this override prices that call."""
        return (
            self.effective_from <= at
            and (self.tenant is None or self.tenant == tenant)
            and (self.provider is None or fnmatchcase(provider.lower(), self.provider.lower()))
            and fnmatchcase(model.lower(), self.model.lower())
        )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _instant(value: object, field: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(field, f"not an ISO 8601 time: {value!r}") from None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValidationError(field, "must be a time with a UTC offset")
    return value


def resolve_model(provider: str, model: str) -> tuple[Provider, ModelInfo] | None:
    """Find ``provider/model`` in the catalog the way users write model ids.

    Accepts provider prefixes (``openai/gpt-4o-mini``), upper case, ``-latest``,
    Bedrock ids with or without a cross-region prefix (``us.anthropic.…``),
    Vertex resource paths, and dated ids the catalog does not know, which
    resolve to their base model when that exists.
    """
    return _resolve(provider.lower(), model.lower())


@lru_cache(maxsize=4096)
def _resolve(provider: str, model: str) -> tuple[Provider, ModelInfo] | None:
    provider = _PROVIDER_ALIASES.get(provider, provider)
    if "/" in model and not model.startswith("publishers/"):
        prefix, rest = model.split("/", 1)
        if _PROVIDER_ALIASES.get(prefix, prefix) == provider or _known_provider(prefix):
            provider, model = _PROVIDER_ALIASES.get(prefix, prefix), rest
    model = _BEDROCK_REGION.sub("", model)
    for candidate in _candidates(model):
        found = _lookup(provider, candidate)
        if found is not None:
            return found
    return None


def _candidates(model: str) -> Iterable[str]:
    yield model
    base = _DATE_SUFFIX.sub("", model)
    if base != model:
        yield base


def _lookup(provider: str, model: str) -> tuple[Provider, ModelInfo] | None:
    snapshot = data_snapshot.get_snapshot()
    try:
        return snapshot.find_provider_model(model, None, provider or None, None)
    except LookupError:
        return None


def _known_provider(name: str) -> bool:
    return any(p.id == name for p in data_snapshot.get_snapshot().providers)


class CatalogPricer:
    """Prices calls from overrides, the bundled catalog, or a flagged fallback.

    Args:
        overrides: prices that win over the catalog (see ``PriceOverride``).
        fallback: the rate for models nobody knows; default: the most
            expensive model of the call's provider.
    """

    currency = "USD"

    def __init__(
        self, overrides: Iterable[PriceOverride] = (), fallback: ModelRate | None = None
    ) -> None:
        self._overrides = sorted(overrides, key=lambda o: o.effective_from, reverse=True)
        self._fallback = fallback
        self._quotes: dict[tuple[str, str], _Quote] = {}

    def add_override(self, override: PriceOverride) -> None:
        """Add a price override (effective from its ``effective_from``)."""
        self._overrides = sorted(
            [*self._overrides, override], key=lambda o: o.effective_from, reverse=True
        )

    def price(
        self, provider: str, model: str, usage: Usage, at: datetime, tenant: str | None = None
    ) -> Price:
        """The price of ``usage`` on ``provider/model`` at ``at``; never None, never silently 0."""
        if self._overrides:
            override = self._override(provider, model, tenant, at)
            if override is not None:
                return _rate_price(override.rate, usage, "override", {"override": override.model})
        quote = self._quotes.get((provider, model))
        if quote is None:
            quote = self._quote(provider, model)
        if quote.fixed is not None and not usage.images and not usage.audio_ms:
            # A price that never changes, for usage it covers in full (see _uncovered).
            micros = _zepto_micros(quote.fixed, usage)
            return Price(micros, "USD", "catalog", quote.detail.copy())
        found = quote.found
        if found is not None:
            return _catalog_price(found, usage, at, "catalog")
        if self._fallback is not None:
            price = _rate_price(self._fallback, usage, "fallback", {"fallback": "configured"})
        else:
            price = _catalog_price(most_expensive(provider), usage, at, "fallback")
        price.known_model = False
        return price

    def estimate(
        self,
        request: Mapping[str, Any],
        *,
        provider: str,
        model: str | None = None,
        at: datetime,
        tenant: str | None = None,
        settings: EstimateSettings | None = None,
    ) -> tuple[Usage, Price]:
        """Estimate a provider request offline and price the estimate (the most it may cost).

        ``model`` defaults to the request's own ``model``.
        """
        usage = estimate_request(
            request, provider=provider, model=model, settings=settings or EstimateSettings()
        )
        name = model or str(request.get("model", ""))
        return usage, self.price(provider, name, usage, at, tenant)

    def _quote(self, provider: str, model: str) -> _Quote:
        """What pricing ``provider/model`` needs, worked out once per name."""
        found = resolve_model(provider, model)
        fixed, detail = None, {}
        if found is not None and isinstance(found[1].prices, ModelPrice):
            linearized = _linearized(found[1].prices)
            fixed = linearized.zepto
            detail = _detail(found, linearized.units)
        if len(self._quotes) >= 4096:  # names come from callers: keep the cache bounded
            self._quotes.clear()
        quote = self._quotes[(provider, model)] = _Quote(found, fixed, detail)
        return quote

    def _override(
        self, provider: str, model: str, tenant: str | None, at: datetime
    ) -> PriceOverride | None:
        candidates = [o for o in self._overrides if o.matches(provider, model, tenant, at)]
        own = [o for o in candidates if o.tenant is not None]
        chosen = own or candidates
        return chosen[0] if chosen else None


@lru_cache(maxsize=256)
def most_expensive(provider: str) -> tuple[Provider, ModelInfo]:
    """The catalog model with the highest output price for ``provider`` (else of all)."""
    providers = data_snapshot.get_snapshot().providers
    wanted = _PROVIDER_ALIASES.get(provider.lower(), provider.lower())
    pool = [p for p in providers if p.id == wanted] or list(providers)
    best = max(
        ((p, m) for p in pool for m in p.models),
        key=lambda pm: _peak(_standard_price(pm[1]), "output_mtok"),
    )
    return best


def _standard_price(model: ModelInfo) -> ModelPrice:
    prices = model.prices
    return prices if isinstance(prices, ModelPrice) else prices[-1].prices


def _peak(price: ModelPrice, key: str) -> Decimal:
    value = price.__dict__.get(key)
    if isinstance(value, TieredPrices):
        return max([value.base, *(t.price for t in value.tiers)])
    return value if isinstance(value, Decimal) else Decimal(0)


def _catalog_price(
    found: tuple[Provider, ModelInfo], usage: Usage, at: datetime, source: str
) -> Price:
    model = found[1]
    model_price = model.get_prices(at)
    micros, units = _calc_micros(model_price, usage)
    detail = _detail(found, units)
    uncovered = _uncovered(usage, model_price)
    if uncovered:
        detail["uncovered"] = uncovered
    return Price(micros, "USD", "fallback" if uncovered else source, detail)


def _detail(found: tuple[Provider, ModelInfo], units: dict[str, str]) -> dict[str, Any]:
    return {
        "provider_id": found[0].id,
        "model_id": found[1].id,
        "unit_prices": units,
        "catalog_version": CATALOG_VERSION,
    }


_M = 1_000_000
#: one probe per usage term, in _terms order; each is priced minus the empty call
_PROBES: tuple[dict[str, int], ...] = (
    {"input_tokens": _M},
    {"input_tokens": _M, "cache_read_tokens": _M},
    {"input_tokens": _M, "cache_write_tokens": _M},
    {"input_tokens": _M, "input_audio_tokens": _M},
    {"output_tokens": _M},
    {"output_tokens": _M, "output_reasoning_tokens": _M},
    {"output_tokens": _M, "output_audio_tokens": _M},
    {"audio_seconds": _M},
)
_Linear = tuple[Decimal, tuple[Decimal, ...]]
#: per price: tier thresholds on input tokens, and one linear piece per input range
_Pieces = tuple[list[int], list[_Linear]]
#: the unit of integer prices: every catalog rate is a whole number of zepto-dollars
_ZEPTO = 10**21
_ZEPTO_PER_MICRO = _ZEPTO // MICROS
#: the pieces again, in zepto-dollars per unit (audio: per millisecond), or None
_IntPieces = tuple[list[int], list[tuple[int, tuple[int, ...]]]]


class _Linearized(NamedTuple):
    """What is worked out once per catalog price (see ``_calc``)."""

    model_price: ModelPrice
    pieces: _Pieces | None
    units: dict[str, str]
    zepto: _IntPieces | None


_LINEAR: dict[int, _Linearized] = {}


class _Quote(NamedTuple):
    """A model name as the catalog resolves it (see ``CatalogPricer._quote``)."""

    found: tuple[Provider, ModelInfo] | None
    #: the price in zepto-dollars when it never changes (no history, no time of day)
    fixed: _IntPieces | None
    #: the price's detail when fixed
    detail: dict[str, Any]


#: usage[2:8] of a call with no cached, cache-write, reasoning or audio tokens, no audio
_PLAIN = (0,) * 6


def _calc_micros(model_price: ModelPrice, usage: Usage) -> tuple[int, dict[str, str]]:
    """``_calc`` rounded up to whole micro-dollars, in integer arithmetic where exact.

    Each piece's fee and coefficients are converted once to whole
    zepto-dollars (per millisecond for audio); the price of a call is then a
    sum of integer products, and the one rounding up happens in integers too.
    A rate finer than a zepto-dollar (none in the catalog) keeps the Decimal path.
    """
    linearized = _linearized(model_price)
    if linearized.zepto is None:
        total, units = _calc(model_price, usage)
        return _micros(total), units
    return _zepto_micros(linearized.zepto, usage), linearized.units


def _zepto_micros(pieces: _IntPieces, usage: Usage) -> int:
    """The price of ``usage`` at integer ``pieces``, rounded up to whole micro-dollars."""
    thresholds, linears = pieces
    fee, coefficients = linears[bisect_left(thresholds, usage.input_tokens)]
    if usage[2:8] == _PLAIN:  # input and output tokens only, the usual call
        zepto = coefficients[0] * usage.input_tokens + coefficients[4] * usage.output_tokens
    else:
        cached_in, written, audio_in, reasoning, audio_out, audio_ms = _parts(usage)
        zepto = (
            coefficients[0] * (usage.input_tokens - cached_in - written - audio_in)
            + coefficients[1] * cached_in
            + coefficients[2] * written
            + coefficients[3] * audio_in
            + coefficients[4] * (usage.output_tokens - reasoning - audio_out)
            + coefficients[5] * reasoning
            + coefficients[6] * audio_out
            + coefficients[7] * audio_ms
        )
    return -(-(fee * usage.requests + zepto) // _ZEPTO_PER_MICRO)


def _in_zepto(pieces: _Pieces) -> _IntPieces | None:
    thresholds, linears = pieces
    out = []
    scales = (_ZEPTO,) * (len(_PROBES) - 1) + (_ZEPTO // 1000,)  # audio: seconds -> ms
    for fee, coefficients in linears:
        whole = [_whole(fee, _ZEPTO)]
        whole += [_whole(c, scale) for c, scale in zip(coefficients, scales, strict=True)]
        if None in whole:
            return None
        out.append((cast(int, whole[0]), tuple(cast(list[int], whole[1:]))))
    return thresholds, out


def _whole(amount: Decimal, scale: int) -> int | None:
    """``amount * scale`` if that is a whole number, else None."""
    with localcontext() as ctx:
        ctx.prec = 80
        scaled = amount * scale
    return int(scaled) if scaled == scaled.to_integral_value() else None


def _linearized(model_price: ModelPrice) -> _Linearized:
    cached = _LINEAR.get(id(model_price))
    if cached is None or cached.model_price is not model_price:
        pieces = _pieces(model_price)
        zepto = None if pieces is None else _in_zepto(pieces)
        cached = _Linearized(model_price, pieces, _unit_prices(model_price), zepto)
        _LINEAR[id(model_price)] = cached
    return cached


def _calc(model_price: ModelPrice, usage: Usage) -> tuple[Decimal, dict[str, str]]:
    """The exact catalog price of ``usage``: genai-prices' result, computed fast.

    genai-prices decomposes usage through its unit registry on every call
    (about 120 us). A price is linear in the usage terms plus a fixed fee per
    request, piece by piece between the tier thresholds on input tokens that
    context-length tiers define. So for each piece the fee (the price of an
    empty call) and the per-unit coefficients are probed once through
    genai-prices itself, and the sum is taken exactly in Decimal. Also
    returns the unit prices, described once per price.
    """
    _, pieces, units, _ = _linearized(model_price)
    if pieces is None:
        total: Decimal = model_price.calc_price(_genai_usage(usage))["total_price"]
        return total, units
    thresholds, linears = pieces
    fee, coefficients = linears[bisect_left(thresholds, usage.input_tokens)]
    terms = _terms(usage)
    variable = sum((c * x for c, x in zip(coefficients, terms, strict=True) if x), Decimal(0))
    return fee * usage.requests + variable, units


def _pieces(model_price: ModelPrice) -> _Pieces | None:
    """One linear price per input range: a tier applies once input tokens exceed its start."""
    prices = {k: v for k, v in model_price.__dict__.items() if v is not None}
    thresholds = sorted({t.start for v in prices.values() if isinstance(v, TieredPrices)
                         for t in v.tiers})  # fmt: skip
    linears = []
    for level in [None, *thresholds]:
        flat = ModelPrice(**{k: _at_level(v, level) for k, v in prices.items()})
        linear = _linear(flat)
        if linear is None:
            return None
        linears.append(linear)
    return thresholds, linears


def _at_level(price: Decimal | TieredPrices, level: int | None) -> Decimal:
    if not isinstance(price, TieredPrices):
        return price
    applicable = price.base
    for tier in price.tiers:
        if level is not None and tier.start <= level:
            applicable = tier.price
    return applicable


def _linear(model_price: ModelPrice) -> _Linear | None:
    try:
        fee = model_price.calc_price(GenaiUsage())["total_price"]
        coefficients = tuple(
            (model_price.calc_price(GenaiUsage(**probe))["total_price"] - fee) / _M
            for probe in _PROBES
        )
    except ValueError:  # a probe this price cannot take: price every call in full
        return None
    return fee, coefficients


def _parts(usage: Usage) -> tuple[int, int, int, int, int, int]:
    """The token subsets, clamped so they never exceed their totals."""
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    written = min(usage.cache_write_tokens, usage.input_tokens - cached)
    audio_in = min(usage.input_audio_tokens, usage.input_tokens - cached - written)
    reasoning = min(usage.reasoning_tokens, usage.output_tokens)
    audio_out = min(usage.output_audio_tokens, usage.output_tokens - reasoning)
    return cached, written, audio_in, reasoning, audio_out, usage.audio_ms


def _terms(usage: Usage) -> tuple[int | Decimal, ...]:
    cached, written, audio_in, reasoning, audio_out, audio_ms = _parts(usage)
    return (
        usage.input_tokens - cached - written - audio_in,
        cached,
        written,
        audio_in,
        usage.output_tokens - reasoning - audio_out,
        reasoning,
        audio_out,
        Decimal(audio_ms) / 1000 if audio_ms else 0,
    )


def _unit_prices(model_price: ModelPrice) -> dict[str, str]:
    units = {k: str(v) for k, v in model_price.__dict__.items() if isinstance(v, Decimal)}
    return units | {
        k: f"{v.base} (+tiers)"
        for k, v in model_price.__dict__.items()
        if isinstance(v, TieredPrices)
    }


_OVERLAPS = (
    ("cache_read_tokens", "input_audio_tokens", "cache_audio_read_tokens"),
    ("cache_write_tokens", "input_audio_tokens", "cache_audio_write_tokens"),
    ("output_reasoning_tokens", "output_audio_tokens", "output_audio_reasoning_tokens"),
)


def _genai_usage(usage: Usage) -> GenaiUsage:
    cached, written, audio_in, reasoning, audio_out, audio_ms = _parts(usage)
    values: dict[str, int | Decimal] = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
    }
    optional = {
        "cache_read_tokens": cached,
        "cache_write_tokens": written,
        "input_audio_tokens": audio_in,
        "output_reasoning_tokens": reasoning,
        "output_audio_tokens": audio_out,
    }
    values |= {key: value for key, value in optional.items() if value}
    # Our subsets are disjoint; genai-prices wants that said where two are reported.
    for a, b, overlap in _OVERLAPS:
        if a in values and b in values:
            values[overlap] = 0
    if audio_ms:
        values["audio_seconds"] = Decimal(audio_ms) / 1000
    return GenaiUsage(**values)


def _uncovered(usage: Usage, model_price: ModelPrice) -> list[str]:
    """Usage kinds this price has no rate for: flagged, never silently free."""
    if not usage.images and not usage.audio_ms:
        return []
    keys = {k for k, v in model_price.__dict__.items() if v is not None}
    out = []
    if usage.images and not any("image" in k for k in keys):
        out.append("images")
    if usage.audio_ms and not any("audio_hours" in k or "audio_seconds" in k for k in keys):
        out.append("audio_seconds")
    return out


def _rate_price(rate: ModelRate, usage: Usage, source: str, detail: dict[str, Any]) -> Price:
    return Price(rate.cost_micros(usage), "USD", source, detail | {"rate": rate.describe()})


def _micros(amount: Decimal) -> int:
    return int((amount * MICROS).to_integral_value(rounding=ROUND_CEILING))
