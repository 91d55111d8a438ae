"""Cost budgets with real catalog prices, through the Governor, on every store.

User system 3 (a desktop app with a subscription-period USD budget) and the
cost side of system 2, priced by the bundled genai-prices catalog.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from allotment.core.decisions import Reason, State
from allotment.errors import BudgetExceeded
from allotment.governor import Governor
from allotment.store.base import EventQuery

DESKTOP = {"tenant": "desk", "user": "cust-1", "device": "d-1"}
PERIOD = {"kind": "billing", "start": "2026-11-15T09:30:00Z", "end": "2026-12-15T09:30:00Z"}


@pytest.fixture
def desk(make_governor: Callable[..., Governor]) -> Governor:
    gov: Governor = make_governor()
    gov.create_budget({"id": "sub", "tenant": "desk", "meter": "cost", "window": PERIOD,
                       "per": "user", "limit": "0.05", "currency": "USD"})  # fmt: skip
    return gov


class TestSystem3DesktopSubscription:
    def test_dated_model_id_priced_as_its_base_model(self, desk: Governor) -> None:
        # gpt-4o-mini: 10k in x $0.15 + 1k out x $0.60 per million = 0.0021 USD
        desk.authorize("r1", DESKTOP, "openai", "gpt-4o-mini-2024-07-18", {"output_tokens": 1000})
        result = desk.commit("r1", {"input_tokens": 10_000, "output_tokens": 1_000})
        assert result.event.usage.cost_micros == 2_100
        assert result.event.price["model_id"] == "gpt-4o-mini"
        assert result.event.price["source"] == "catalog"

    def test_transcription_priced_per_audio_minute(self, desk: Governor) -> None:
        # whisper-1: $0.006 per minute; 2.5 minutes = 0.015 USD
        result = desk.record("t1", DESKTOP, "openai", "whisper-1", {"audio_seconds": "150"})
        assert result.event.usage.cost_micros == 15_000
        assert desk.status(DESKTOP)[0].used == 15_000

    def test_estimate_is_priced_so_the_period_budget_refuses_in_advance(
        self, desk: Governor
    ) -> None:
        # claude-3-5-sonnet: 20k output tokens x $15 per million = 0.30 > 0.05
        decision = desk.authorize("r1", DESKTOP, "anthropic", "claude-3-5-sonnet-latest",
                                  {"output_tokens": 20_000})  # fmt: skip
        assert decision.reason is Reason.ESTIMATE_EXCEEDS_REMAINING
        refusal = decision.refusals[0]
        assert (refusal.requested, refusal.remaining) == (300_000, 50_000)
        assert refusal.resets_at == datetime(2026, 12, 15, 9, 30, tzinfo=UTC)
        view = decision.budgets[0].to_dict(client=True)  # what the end user is shown
        assert view["percent_available"] == "100.00" and "used" not in view

    def test_exhausted_period_blocks_and_records(self, desk: Governor) -> None:
        desk.record("p", DESKTOP, "anthropic", "claude-3-5-sonnet", {"output_tokens": 4_000})
        assert desk.status(DESKTOP)[0].state is State.EXCEEDED  # 0.06 of 0.05
        with pytest.raises(BudgetExceeded) as info:
            desk.hold(DESKTOP, "openai", "gpt-4o-mini", {"output_tokens": 10})
        assert info.value.reason is Reason.HARD_CAP_EXCEEDED
        blocked = desk.events(EventQuery(tenant="desk", status="blocked"))  # type: ignore[arg-type]
        assert [e.reason for e in blocked] == ["hard_cap_exceeded"]

    def test_provider_errors_are_error_events(self, desk: Governor) -> None:
        desk.authorize("r1", DESKTOP, "openai", "gpt-4o-mini", {"output_tokens": 100})
        result = desk.commit("r1", {"input_tokens": 50}, status="error", reason="503 upstream")
        assert (result.event.status.value, result.event.reason) == ("error", "503 upstream")


class TestUnknownModels:
    def test_fallback_prices_conservatively_flags_and_lists(self, desk: Governor) -> None:
        result = desk.record("u1", DESKTOP, "openai", "my-finetune", {"input_tokens": 100})
        price = result.event.price
        assert (price["source"], price["unknown_model"]) == ("fallback", True)
        assert result.event.usage.cost_micros and result.event.usage.cost_micros > 0
        desk.record("k1", DESKTOP, "openai", "gpt-4o-mini", {"input_tokens": 100})
        flagged = desk.events(EventQuery(price_source="fallback"))
        assert [e.request_id for e in flagged] == ["u1"]

    def test_deny_refuses_unknown_models_at_authorize(
        self, make_governor: Callable[..., Governor]
    ) -> None:
        gov: Governor = make_governor(unknown_model="deny")
        decision = gov.authorize("r1", DESKTOP, "openai", "my-finetune", {"output_tokens": 10})
        assert decision.reason is Reason.UNKNOWN_MODEL
        assert decision.refusals[0].budget_id is None
        assert gov.authorize("r2", DESKTOP, "openai", "gpt-4o-mini", {"output_tokens": 10}).allowed
        blocked = gov.events(EventQuery(status="blocked"))  # type: ignore[arg-type]
        assert [(e.request_id, e.reason) for e in blocked] == [("r1", "unknown_model")]


def test_system2_cost_policies_with_real_prices(make_governor: Callable[..., Any]) -> None:
    """Org and user cost policies in USD; calls on the user's own key are not charged."""
    gov: Governor = make_governor()
    common = {"tenant": "gw", "meter": "cost", "per": "user", "window": "day",
              "exclude": {"tags.byok": "true"}}  # fmt: skip
    gov.create_budget(common | {"id": "org", "limit": "0.01"})
    gov.create_budget(common | {"id": "vip", "limit": "1.00", "match": {"user": "vip"},
                                "overrides": True})  # fmt: skip
    call = {"input_tokens": 2_000, "output_tokens": 1_000}  # gpt-4o: 0.005 + 0.01 = 0.015 USD
    bob = {"tenant": "gw", "user": "bob"}
    assert gov.authorize("b1", bob, "openai", "gpt-4o", call).reason is (
        Reason.ESTIMATE_EXCEEDS_REMAINING
    )
    assert gov.authorize("v1", {"tenant": "gw", "user": "vip"}, "openai", "gpt-4o", call).allowed
    byok = bob | {"tags": {"byok": "true"}}
    assert gov.authorize("b2", byok, "openai", "gpt-4o", call).allowed
