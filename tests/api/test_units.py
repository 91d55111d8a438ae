"""Money and units over HTTP: integers in base units, named in ``unit``, shown in ``display``.

A EUR cost budget (the ledger is in USD, at 0.5 EUR a dollar) and a token
budget, read through every answer that carries amounts, on both paths.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from allotment.api import create_app, schemas
from allotment.governor import Governor

ALICE = {"tenant": "acme", "user": "alice"}
EUR = {"id": "eur-day", "tenant": "acme", "meter": "cost", "currency": "EUR", "window": "day",
       "limit": "5"}  # fmt: skip
TOKENS = {"id": "tok-day", "tenant": "acme", "meter": "tokens", "window": "day", "limit": 12345}


class Api:
    def __init__(self, lean: bool) -> None:
        self.gov = Governor("memory://")
        self.gov.set_rate("USD", "EUR", "0.5", effective_from=datetime(2020, 1, 1, tzinfo=UTC))
        self.gov.create_budget(EUR)
        self.gov.create_budget(TOKENS)
        _, key = self.gov.create_key("tenant_admin", "acme")
        self.client = TestClient(create_app(self.gov, lean=lean))
        self.headers = {"Authorization": f"Bearer {key}"}
        # 2.40 USD = 1.20 EUR used, and 200 tokens
        self.gov.record("spent", ALICE, "openai", "gpt-4o-mini",
                        {"output_tokens": 200, "cost": "2.40"})  # fmt: skip

    def get(self, path: str, **params: Any) -> Any:
        answer = self.client.get(path, params=params, headers=self.headers)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def send(self, method: str, path: str, body: object) -> Any:
        return self.client.request(method, path, json=body, headers=self.headers)

    def authorize(self, rid: str, estimate: dict[str, Any]) -> Any:
        body = {"request_id": rid, "subject": ALICE, "provider": "openai",
                "model": "gpt-4o-mini", "estimate": estimate}  # fmt: skip
        return self.send("POST", "/v1/authorize", body)


@pytest.fixture(params=[True, False], ids=["lean", "fastapi"])
def api(request: pytest.FixtureRequest) -> Api:
    return Api(request.param)


def by_id(items: list[dict[str, Any]], key: str = "budget_id") -> dict[str, dict[str, Any]]:
    return {item[key]: item for item in items}


EUR_VIEW = {"used": 1_200_000, "reserved": 0, "limit": 5_000_000, "remaining": 3_800_000,
            "overshoot": 0, "unit": "micros", "currency": "EUR", "percent": "24.00",
            "percent_available": "76.00"}  # fmt: skip
EUR_SHOWN = {"used": "1.20", "reserved": "0.00", "limit": "5.00", "remaining": "3.80",
             "overshoot": "0.00"}  # fmt: skip


def test_status_names_the_unit_and_currency_and_shows_amounts(api: Api) -> None:
    answer = api.get("/v1/status", user="alice")
    schemas.StatusOut.model_validate(answer)
    views = by_id(answer["budgets"])
    eur, tok = views["eur-day"], views["tok-day"]
    assert {k: eur[k] for k in EUR_VIEW} == EUR_VIEW and eur["display"] == EUR_SHOWN
    assert (tok["used"], tok["limit"], tok["unit"], tok["currency"]) == (200, 12345, "tokens", None)
    assert tok["display"] == {"used": "200", "reserved": "0", "limit": "12345",
                              "remaining": "12145", "overshoot": "0"}  # fmt: skip
    assert tok["percent"] == "1.62" and tok["percent_available"] == "98.38"
    client = api.get("/v1/status", user="alice", view="client")["budgets"]
    assert all("unit" not in v and "display" not in v for v in client)  # percentages only


def test_a_granted_authorize_names_units_without_display(api: Api) -> None:
    granted = api.authorize("r1", {"output_tokens": 100, "cost": "1.00"})
    assert granted.status_code == 200
    schemas.DecisionOut.model_validate(granted.json())
    views = by_id(granted.json()["budgets"])
    assert (views["eur-day"]["unit"], views["eur-day"]["currency"]) == ("micros", "EUR")
    assert views["eur-day"]["reserved"] == 500_000 and views["tok-day"]["unit"] == "tokens"
    assert all("display" not in v for v in views.values())  # the hot path writes no display
    headers = granted.headers  # the tightest: 1.70 of 5 EUR (34 %) beats 300 of 12,345 tokens
    assert (headers["X-Budget-Id"], headers["X-Budget-Remaining"]) == ("eur-day", "3300000")
    assert (headers["X-Budget-Unit"], headers["X-Budget-Currency"]) == ("micros", "EUR")
    assert headers["X-Budget-Percent-Used"] == "34.00"
    committed = api.send("POST", "/v1/commit", {"request_id": "r1", "usage": {"cost": "2"}})
    schemas.CommitOut.model_validate(committed.json())
    adjustments = by_id(committed.json()["adjustments"])
    assert adjustments["eur-day"] == {"budget_id": "eur-day", "member": "", "estimated": 500_000,
                                      "actual": 1_000_000, "difference": -500_000,
                                      "unit": "micros", "currency": "EUR"}  # fmt: skip
    assert (adjustments["tok-day"]["unit"], adjustments["tok-day"]["currency"]) == ("tokens", None)


def test_the_402_payload_names_unit_currency_and_shows_amounts(api: Api) -> None:
    refused = api.authorize("r2", {"cost": "9"})  # 4.50 EUR, 3.80 left
    assert refused.status_code == 402
    schemas.RefusalBody.model_validate(refused.json())
    error = refused.json()["error"]
    assert (error["code"], error["budget_id"], error["unit"], error["currency"]) == (
        "budget_exceeded", "eur-day", "micros", "EUR")  # fmt: skip
    assert (error["remaining"], error["limit"]) == (3_800_000, 5_000_000)
    assert error["display"] == {"remaining": "3.80", "limit": "5.00"}
    [refusal] = error["decision"]["refusals"]
    assert (refusal["requested"], refusal["unit"], refusal["currency"]) == (
        4_500_000, "micros", "EUR")  # fmt: skip
    assert refusal["display"] == {"requested": "4.50", "remaining": "3.80", "limit": "5.00"}
    assert by_id(error["decision"]["budgets"])["eur-day"]["display"] == EUR_SHOWN
    tokens = api.authorize("r3", {"output_tokens": 20_000}).json()["error"]
    assert (tokens["budget_id"], tokens["unit"], tokens["currency"]) == ("tok-day", "tokens", None)
    assert tokens["display"] == {"remaining": "12145", "limit": "12345"}


def test_budgets_keep_the_spec_form_and_add_unit_and_limit_units(api: Api) -> None:
    answer = api.get("/v1/budgets")
    schemas.BudgetsOut.model_validate(answer)
    budgets = by_id(answer["budgets"], "id")
    eur, tok = budgets["eur-day"], budgets["tok-day"]
    assert (eur["limit"], eur["currency"], eur["unit"], eur["limit_units"]) == (
        "5.000000", "EUR", "micros", 5_000_000)  # fmt: skip
    assert eur["display"] == {"limit": "5.00"}
    assert (tok["limit"], tok["unit"], tok["limit_units"], tok["display"]) == (
        "12345", "tokens", 12345, {"limit": "12345"})  # fmt: skip
    one = api.get("/v1/budgets/eur-day")
    schemas.BudgetOut.model_validate(one)
    assert one == eur


def test_a_budget_answer_may_be_sent_back(api: Api) -> None:
    eur = api.get("/v1/budgets/eur-day")
    same = api.send("PATCH", "/v1/budgets/eur-day", eur)
    assert same.status_code == 200 and same.json() == eur
    changed = api.send("PATCH", "/v1/budgets/eur-day", eur | {"limit": "6"})
    assert changed.status_code == 422 and changed.json()["error"]["field"] == "display"
    wrong = api.send("PATCH", "/v1/budgets/eur-day", {"limit_units": 7})
    assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "limit_units"
    assert api.get("/v1/budgets/eur-day")["limit_units"] == 5_000_000  # nothing changed
    copy = {k: v for k, v in eur.items() if k != "display"} | {"id": "eur-copy"}
    made = api.send("POST", "/v1/budgets", copy)
    assert made.status_code == 201, made.text
    schemas.BudgetOut.model_validate(made.json())
    bad = api.send("POST", "/v1/budgets", copy | {"id": "eur-bad", "unit": "tokens"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "unit"


def test_usage_rows_and_events_name_their_currency_and_show_amounts(api: Api) -> None:
    usage = api.get("/v1/usage", by="user")
    schemas.UsageOut.model_validate(usage)
    [row] = usage["rows"]
    assert (row["cost_micros"], row["currency"], row["output_tokens"]) == (2_400_000, "USD", 200)
    assert (row["display"]["cost"], row["display"]["output_tokens"]) == ("2.40", "200")
    assert row["display"]["audio_seconds"] == "0"
    page = api.get("/v1/events")
    schemas.EventPage.model_validate(page)
    [event] = page["events"]
    assert (event["usage"]["cost_micros"], event["currency"]) == (2_400_000, "USD")
    assert event["display"]["usage"]["cost"] == "2.40" and event["display"]["estimate"] is None


def test_audio_is_counted_in_ms_and_shown_in_seconds(api: Api) -> None:
    api.gov.create_budget({"id": "audio", "tenant": "acme", "meter": "audio_seconds",
                           "window": "day", "limit": "90"})  # fmt: skip
    api.gov.record("talk", ALICE, "openai", "whisper-1", {"audio_seconds": "3.5", "cost": "0"})
    view = by_id(api.get("/v1/status", user="alice")["budgets"])["audio"]
    assert (view["used"], view["limit"], view["unit"]) == (3500, 90_000, "ms")
    assert (view["display"]["used"], view["display"]["limit"]) == ("3.5", "90")
    assert api.get("/v1/budgets/audio")["limit_units"] == 90_000
