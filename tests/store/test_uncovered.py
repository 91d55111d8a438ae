"""No silent allows: a call no budget covers, and a model nobody prices, are flagged."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from allotment.core.decisions import Reason
from allotment.errors import ValidationError
from allotment.governor import Governor

ACME = {"tenant": "acme", "user": "u1"}
BUDGET = {"id": "acme-day", "tenant": "acme", "meter": "tokens", "window": "day", "limit": 100}


def codes(decision: object) -> list[str]:
    return [w.code for w in decision.warnings]  # type: ignore[attr-defined]


def test_an_uncovered_call_is_allowed_with_a_warning_by_default(
    make_governor: Callable[..., Governor],
) -> None:
    gov = make_governor()
    gov.create_budget(BUDGET)
    stranger = gov.authorize("r1", {"tenant": "unknown"}, "openai", "gpt-4o", {"input_tokens": 1})
    assert stranger.allowed and codes(stranger) == ["no_budget"]
    assert stranger.to_dict()["warnings"][0] == {"budget_id": None, "code": "no_budget",
                                                 "percent": None, "threshold": None}  # fmt: skip
    covered = gov.authorize("r2", ACME, "openai", "gpt-4o", {"input_tokens": 1})
    assert covered.allowed and codes(covered) == []


def test_uncovered_calls_can_be_allowed_quietly_or_denied(
    make_governor: Callable[..., Governor],
) -> None:
    quiet = make_governor(uncovered="allow")
    assert codes(quiet.authorize("r1", ACME, "openai", "gpt-4o", {"input_tokens": 1})) == []
    strict = make_governor(uncovered="deny")
    refused = strict.authorize("r2", {"tenant": "other"}, "openai", "gpt-4o", {"input_tokens": 1})
    assert not refused.allowed and refused.reason is Reason.NO_BUDGET
    assert refused.refusals[0].budget_id is None
    assert [e.reason for e in strict.events()] == ["no_budget"]
    strict.create_budget(BUDGET)
    assert strict.authorize("r3", ACME, "openai", "gpt-4o", {"input_tokens": 1}).allowed


def test_the_setting_is_checked() -> None:
    with pytest.raises(ValidationError) as info:
        Governor("memory://", uncovered="maybe")
    assert info.value.field == "uncovered"


def test_an_unknown_model_is_flagged_in_the_authorize_answer(
    make_governor: Callable[..., Governor],
) -> None:
    gov = make_governor()
    gov.create_budget(BUDGET)
    decision = gov.authorize("r1", ACME, "openai", "gpt-9-imaginary", {"input_tokens": 1})
    assert decision.allowed and codes(decision) == ["unknown_model"]
    assert codes(gov.authorize("r2", ACME, "openai", "gpt-4o", {"input_tokens": 1})) == []


def test_over_http_a_denied_uncovered_call_is_a_402_naming_the_reason() -> None:
    from fastapi.testclient import TestClient

    from allotment.api import create_app

    gov = Governor("memory://", uncovered="deny")
    _, key = gov.create_key("admin")
    client = TestClient(create_app(gov))
    body = {"request_id": "r", "subject": {"tenant": "acme"}, "provider": "openai",
            "model": "gpt-4o", "estimate": {"input_tokens": 1}}  # fmt: skip
    answer = client.post("/v1/authorize", json=body, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 402 and answer.json()["error"]["code"] == "no_budget"
