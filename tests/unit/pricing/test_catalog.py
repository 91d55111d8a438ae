"""Pinned catalog prices: every figure is worked out by hand from published rates.

Rates are USD per million tokens (per hour of audio for transcription).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from genai_prices import data_snapshot

from allotment.core.usage import Usage
from allotment.pricing import CATALOG_VERSION, CatalogPricer, ModelRate, PriceOverride
from allotment.pricing.catalog import (
    _calc,
    _calc_micros,
    _catalog_price,
    _genai_usage,
    _micros,
    resolve_model,
)

NOON = datetime(2026, 11, 23, 12, tzinfo=UTC)
pricer = CatalogPricer()


def micros(provider: str, model: str, at: datetime = NOON, **usage: int) -> int:
    return pricer.price(provider, model, Usage(**usage), at).amount_micros


PINNED = [
    # gpt-4o-mini $0.15 in, $0.075 cached, $0.60 out:
    # 8000 x 0.15 + 2000 x 0.075 + 1000 x 0.6 = 0.00195 USD
    ("openai", "gpt-4o-mini", {"input_tokens": 10_000, "cached_input_tokens": 2_000,
                               "output_tokens": 1_000}, 1_950),
    ("openai", "openai/gpt-4o-mini-2024-07-18", {"input_tokens": 10_000,
     "cached_input_tokens": 2_000, "output_tokens": 1_000}, 1_950),
    ("openai", "GPT-4O-MINI", {"input_tokens": 10_000, "cached_input_tokens": 2_000,
                               "output_tokens": 1_000}, 1_950),
    # o3-mini $1.10 in, $4.40 out; reasoning tokens are output tokens:
    # 1000 x 1.1 + 2000 x 4.4 = 0.0099
    ("openai", "o3-mini", {"input_tokens": 1_000, "output_tokens": 2_000,
                           "reasoning_tokens": 1_500}, 9_900),
    # whisper-1 $0.36 per audio hour: 90 s = 0.009
    ("openai", "whisper-1", {"audio_ms": 90_000}, 9_000),
    # claude-3-5-sonnet $3 in, $0.30 cache read, $3.75 cache write, $15 out:
    # 4000 x 3 + 4000 x 0.3 + 2000 x 3.75 + 500 x 15 = 0.0282
    ("anthropic", "claude-3-5-sonnet-latest", {"input_tokens": 10_000,
     "cached_input_tokens": 4_000, "cache_write_tokens": 2_000, "output_tokens": 500}, 28_200),
    # claude-3-5-haiku $0.80 in, $4 out: 0.0008 + 0.004
    ("anthropic", "claude-3-5-haiku-20241022", {"input_tokens": 1_000, "output_tokens": 1_000},
     4_800),
    # Bedrock ids, with and without a cross-region prefix: $3 in, $15 out
    ("bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0", {"input_tokens": 1_000,
     "output_tokens": 1_000}, 18_000),
    ("aws", "us.anthropic.claude-3-7-sonnet-20250219-v1:0", {"input_tokens": 1_000,
     "output_tokens": 1_000}, 18_000),
    # gemini-1.5-pro: $1.25 in / $5 out up to 128k prompt tokens, $2.50 / $10 above
    ("google", "gemini-1.5-pro", {"input_tokens": 100_000, "output_tokens": 1_000}, 130_000),
    ("google", "gemini-1.5-pro", {"input_tokens": 200_000, "output_tokens": 1_000}, 510_000),
    # a Vertex resource path: gemini-1.5-flash $0.075 in, $0.30 out
    ("google", "publishers/google/models/gemini-1.5-flash", {"input_tokens": 100_000,
     "output_tokens": 1_000}, 7_800),
    # mistral-large $2 in, $6 out
    ("mistral", "mistral-large-latest", {"input_tokens": 1_000, "output_tokens": 1_000}, 8_000),
    # gpt-4o-realtime-preview: text $5 in / $20 out, audio $40 in / $80 out:
    # 1000 x 5 + 1000 x 40 + 1000 x 20 + 1000 x 80 = 0.145
    ("openai", "gpt-4o-realtime-preview", {"input_tokens": 2_000, "input_audio_tokens": 1_000,
     "output_tokens": 2_000, "output_audio_tokens": 1_000}, 145_000),
    # perplexity sonar: $1 in, $1 out, plus $12 per thousand requests
    ("perplexity", "sonar", {"input_tokens": 1_000}, 13_000),
    ("perplexity", "sonar", {"input_tokens": 1_000, "requests": 2}, 25_000),
]  # fmt: skip


@pytest.mark.parametrize(("provider", "model", "usage", "expected"), PINNED)
def test_pinned_prices(provider: str, model: str, usage: dict[str, int], expected: int) -> None:
    price = pricer.price(provider, model, Usage(**usage), NOON)
    assert (price.amount_micros, price.currency, price.source) == (expected, "USD", "catalog")
    assert price.detail["catalog_version"] == CATALOG_VERSION


def test_price_history_before_and_after_a_change() -> None:
    # claude-sonnet-4-6 charged $6 in / $22.50 out above 200k prompt tokens until
    # 2026-03-13, then a flat $3 / $15: 300k x 6 + 1000 x 22.5 vs 300k x 3 + 1000 x 15
    usage = {"input_tokens": 300_000, "output_tokens": 1_000}
    before = datetime(2026, 3, 12, 12, tzinfo=UTC)
    after = datetime(2026, 3, 14, 12, tzinfo=UTC)
    assert micros("anthropic", "claude-sonnet-4-6", before, **usage) == 1_822_500
    assert micros("anthropic", "claude-sonnet-4-6", after, **usage) == 915_000


def test_time_of_day_prices() -> None:
    # deepseek-chat: $0.27 / $1.10 from 00:30 to 16:30 UTC, half that otherwise
    usage = {"input_tokens": 1_000, "output_tokens": 1_000}
    assert micros("deepseek", "deepseek-chat", NOON, **usage) == 1_370
    assert micros("deepseek", "deepseek-chat", NOON.replace(hour=20), **usage) == 685


def test_rounding_is_up_to_the_next_micro_unit() -> None:
    # 1 gpt-4o-mini input token is 0.00000015 USD: 0.15 micro-USD, charged as 1
    assert micros("openai", "gpt-4o-mini", input_tokens=1) == 1
    assert micros("openai", "gpt-4o-mini", input_tokens=20) == 3  # 3.0 exactly
    assert micros("openai", "gpt-4o-mini", input_tokens=21) == 4  # 3.15 -> 4


def test_unknown_model_is_never_free() -> None:
    price = pricer.price("openai", "my-finetune-xyz", Usage(input_tokens=1000), NOON)
    assert (price.source, price.known_model) == ("fallback", False)
    # the most expensive OpenAI model in the catalog (o1-pro, $150 in)
    assert price.amount_micros == 150_000
    assert price.detail["model_id"] == "o1-pro"
    assert pricer.price("nobody", "x", Usage(input_tokens=1), NOON).amount_micros > 0


def test_configured_fallback() -> None:
    fallback = CatalogPricer(fallback=ModelRate(input=Decimal(50), output=Decimal(100)))
    price = fallback.price("inhouse", "llm-9", Usage(input_tokens=1000, output_tokens=10), NOON)
    assert (price.amount_micros, price.source, price.known_model) == (51_000, "fallback", False)


def test_uncovered_usage_is_flagged() -> None:
    images = pricer.price("openai", "gpt-4o-mini", Usage(input_tokens=10, images=2), NOON)
    assert images.source == "fallback" and images.detail["uncovered"] == ["images"]
    assert images.known_model
    audio = pricer.price("mistral", "mistral-large", Usage(audio_ms=5000), NOON)
    assert audio.detail["uncovered"] == ["audio_seconds"]


class TestOverrides:
    negotiated = PriceOverride(
        "gpt-4o*", ModelRate(input=Decimal("0.10"), output=Decimal("0.40")),
        datetime(2026, 11, 1, tzinfo=UTC), provider="openai",
    )  # fmt: skip
    acme = PriceOverride(
        "gpt-4o-mini", ModelRate(input=Decimal("0.05"), output=Decimal("0.20")),
        datetime(2026, 11, 20, tzinfo=UTC), tenant="acme",
    )  # fmt: skip
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)

    def test_override_wins_from_its_effective_time(self) -> None:
        p = CatalogPricer([self.negotiated])
        assert p.price("openai", "gpt-4o-mini", self.usage, NOON).amount_micros == 500_000
        early = datetime(2026, 10, 31, tzinfo=UTC)
        assert p.price("openai", "gpt-4o-mini", self.usage, early).source == "catalog"

    def test_tenant_override_beats_deployment_override(self) -> None:
        p = CatalogPricer([self.negotiated])
        p.add_override(self.acme)
        assert p.price("openai", "gpt-4o-mini", self.usage, NOON, "acme").amount_micros == 250_000
        assert p.price("openai", "gpt-4o-mini", self.usage, NOON, "globex").amount_micros == (
            500_000
        )

    def test_self_hosted_model(self) -> None:
        own = PriceOverride("llama-3-70b", ModelRate(input=Decimal("0.2"), output=Decimal("0.2")),
                            datetime(2026, 1, 1, tzinfo=UTC), provider="self")  # fmt: skip
        price = CatalogPricer([own]).price("self", "llama-3-70b", self.usage, NOON)
        assert (price.amount_micros, price.source, price.known_model) == (400_000, "override", True)


def test_resolution_forms() -> None:
    assert resolve_model("openai", "nope-2024-01-01") is None
    found = resolve_model("openai", "gpt-4o-mini-2099-12-31")  # unknown date: base model
    assert found is not None and found[1].id == "gpt-4o-mini"
    found = resolve_model("anthropic", "claude-3-5-sonnet-latest")
    assert found is not None and found[1].id == "claude-3-5-sonnet"


def test_fast_path_equals_genai_prices_exactly() -> None:
    """The linear fast path gives genai-prices' own Decimal result for any usage."""
    rng = random.Random(7)
    models = [
        ("openai", "gpt-4o-mini"), ("openai", "o3-mini"), ("openai", "whisper-1"),
        ("anthropic", "claude-3-5-sonnet"), ("anthropic", "claude-sonnet-4-6"),
        ("mistral", "mistral-large"), ("deepseek", "deepseek-chat"),
        ("google", "gemini-1.5-pro"), ("aws", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
        ("openai", "gpt-4o-realtime-preview"), ("openai", "gpt-audio"),
        ("perplexity", "sonar"), ("perplexity", "sonar-pro"), ("google", "gemini-2.5-pro"),
    ]  # fmt: skip
    snapshot = data_snapshot.get_snapshot()
    for provider, model in models:
        _, info = snapshot.find_provider_model(model, None, provider, None)
        model_price = info.get_prices(NOON)
        for _ in range(50):
            inp = rng.randrange(0, 400_000)
            out = rng.randrange(0, 50_000)
            usage = Usage(
                input_tokens=inp, output_tokens=out,
                cached_input_tokens=rng.randrange(0, inp + 1) // 2,
                cache_write_tokens=rng.randrange(0, inp + 1) // 3,
                reasoning_tokens=rng.randrange(0, out + 1),
                input_audio_tokens=rng.randrange(0, inp + 1) // 4,
                output_audio_tokens=rng.randrange(0, out + 1) // 4,
                audio_ms=rng.randrange(0, 600_000) if model == "whisper-1" else 0,
            )  # fmt: skip
            expected = model_price.calc_price(_genai_usage(usage))["total_price"]
            assert _calc(model_price, usage)[0] == expected, (provider, model, usage)
            assert _calc_micros(model_price, usage)[0] == _micros(expected), (model, usage)


@pytest.mark.parametrize("tokens", [0, 1, 127_999, 128_000, 128_001, 10**9])
def test_fast_path_at_tier_boundaries(tokens: int) -> None:
    """A tier applies once input tokens exceed its start, exactly as genai-prices says."""
    _, info = data_snapshot.get_snapshot().find_provider_model(
        "gemini-1.5-pro", None, "google", None
    )
    model_price = info.get_prices(NOON)
    usage = Usage(input_tokens=tokens, output_tokens=1_000, cached_input_tokens=tokens // 2)
    expected = model_price.calc_price(_genai_usage(usage))["total_price"]
    assert _calc(model_price, usage)[0] == expected
    assert _calc_micros(model_price, usage)[0] == _micros(expected)


def test_integer_path_equals_genai_prices_for_every_catalog_price() -> None:
    """Every price of every model, conditional ones included, in whole zepto-dollars."""
    rng = random.Random(11)
    usages = [Usage(), Usage(input_tokens=1), Usage(output_tokens=1, requests=3)]
    usages += [
        Usage(input_tokens=(n := rng.randrange(0, 2_000_000)), output_tokens=rng.randrange(99_999),
              cached_input_tokens=n // 3, reasoning_tokens=rng.randrange(50))
        for _ in range(4)
    ]  # fmt: skip
    checked = 0
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            prices = model.prices if isinstance(model.prices, list) else [model]
            for conditional in prices:
                model_price = conditional.prices
                for usage in usages:
                    try:
                        exact = model_price.calc_price(_genai_usage(usage))["total_price"]
                    except ValueError:
                        continue  # a usage this price cannot take
                    if usage.requests != 1:  # genai-prices charges a request fee once
                        exact = _calc(model_price, usage)[0]
                    assert _calc_micros(model_price, usage)[0] == _micros(exact), model.id
                    checked += 1
    assert checked > 5_000


def test_calls_on_fixed_prices_take_the_short_way_to_the_same_price() -> None:
    """At a price without history, a name resolved once: the same Price in full."""
    rng = random.Random(5)
    usages = [Usage(), Usage(input_tokens=1), Usage(output_tokens=7, requests=3)]
    usages += [Usage(input_tokens=rng.randrange(2_000_000), output_tokens=rng.randrange(99_999))
               for _ in range(6)]  # fmt: skip
    usages += [Usage(input_tokens=(n := rng.randrange(2_000_000)), cached_input_tokens=n // 3,
                     output_tokens=(m := rng.randrange(99_999)), reasoning_tokens=m // 2)
               for _ in range(3)]  # fmt: skip
    fresh = CatalogPricer()
    checked = 0
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            found = resolve_model(provider.id, model.id)
            if found is None or found[1] is not model:
                continue  # an id the catalog itself resolves elsewhere
            for usage in usages:
                try:
                    slow = _catalog_price(found, usage, NOON, "catalog")
                except ValueError:
                    continue  # a usage this price cannot take
                fast = fresh.price(provider.id, model.id, usage, NOON)
                assert (fast.amount_micros, fast.source, fast.detail) == (
                    slow.amount_micros,
                    slow.source,
                    slow.detail,
                ), (provider.id, model.id, usage)
                checked += 1
    assert checked > 5_000
    assert sum(q.fixed is not None for q in fresh._quotes.values()) > 500


def test_estimate_a_request_and_price_it() -> None:
    request = {"model": "gpt-4o-mini", "max_tokens": 1_000,
               "messages": [{"role": "user", "content": "hello world"}]}  # fmt: skip
    usage, price = pricer.estimate(request, provider="openai", at=NOON)
    # 3 (message) + 1 (role) + 2 (hello world) + 3 (reply priming) input tokens
    assert (usage.input_tokens, usage.output_tokens) == (9, 1_000)
    assert price.amount_micros == 602  # 9 x 0.15 + 1000 x 0.60 per million, rounded up
