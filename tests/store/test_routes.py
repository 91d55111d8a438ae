"""Routes (issue 19): ordered candidates tried in one transaction, sub-caps on a backend.

On every backend: the first candidate whose every applicable budget passes is
reserved; each one passed over is named with its budget and reason; with none
left, every candidate's reason. The commit counts on the route reserved (or
where the call really ran), and the ledger keeps the route asked for too.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from allotment.config import load_plan_specs, load_pricing
from allotment.core.decisions import Reason
from allotment.core.routes import Route
from allotment.errors import ValidationError
from allotment.governor import Governor
from allotment.pricing import CatalogPricer, ModelRate, PriceOverride
from allotment.store.base import EventQuery
from tests.conftest import Clock

README = Path(__file__).resolve().parents[2] / "README.md"
ACME = {"tenant": "acme", "user": "u1"}
HOSTED = {"provider": "openai", "model": "gpt-4o-mini", "backend": "hosted"}
SECOND = {"provider": "anthropic", "model": "claude-3-5-haiku", "backend": "hosted"}
OWN = {"provider": "self", "model": "llama-3-70b", "backend": "own"}
ROUTES = [HOSTED, SECOND, OWN]
CALL = {"input_tokens": 100}


def cap(gov: Governor, budget_id: str, limit: int, **match: str) -> None:
    gov.create_budget({"id": budget_id, "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": limit, "match": match})  # fmt: skip


def ask(gov: Governor, request_id: str, routes: list[dict[str, str]] = ROUTES) -> object:
    first = routes[0]
    return gov.authorize(request_id, ACME, first["provider"], first["model"], CALL, routes=routes)


def test_the_first_candidate_with_room_is_reserved(gov: Governor) -> None:
    cap(gov, "openai", 0, provider="openai")
    cap(gov, "hosted", 100, backend="hosted")
    gov.record("used", ACME | {"tags": {"backend": "hosted"}}, "anthropic", "claude-3-5-haiku",
               {"input_tokens": 50})  # fmt: skip
    decision = ask(gov, "r1")
    assert decision.allowed
    assert decision.route == Route("self", "llama-3-70b", "own")
    reasons = [(s.route.label, {(r.budget_id, r.reason) for r in s.refusals})
               for s in decision.skipped]  # fmt: skip
    assert reasons == [
        ("openai/gpt-4o-mini@hosted",
         {("openai", Reason.HARD_CAP_EXCEEDED), ("hosted", Reason.ESTIMATE_EXCEEDS_REMAINING)}),
        ("anthropic/claude-3-5-haiku@hosted", {("hosted", Reason.ESTIMATE_EXCEEDS_REMAINING)}),
    ]  # fmt: skip
    assert decision.to_dict()["route"] == OWN
    # The commit counts on the route reserved; the ledger keeps the route asked for.
    event = gov.commit("r1", {"input_tokens": 80}).event
    assert (event.provider, event.model) == ("self", "llama-3-70b")
    assert dict(event.subject.tags) == {
        "backend": "own", "requested_route": "openai/gpt-4o-mini@hosted",
    }  # fmt: skip
    hosted = next(v for v in gov.status(ACME | {"tags": {"backend": "hosted"}})
                  if v.budget_id == "hosted")  # fmt: skip
    assert (hosted.used, hosted.reserved) == (50, 0)  # never billed on the hosted backend


def test_with_no_candidate_left_every_reason_is_named(gov: Governor) -> None:
    cap(gov, "all", 10)
    refused = ask(gov, "r1")
    assert not refused.allowed and refused.route is None
    assert [s.route for s in refused.skipped] == [Route(**r) for r in ROUTES]
    assert {s.refusals[0].budget_id for s in refused.skipped} == {"all"}
    assert refused.refusals[0].reason is Reason.ESTIMATE_EXCEEDS_REMAINING
    [blocked] = gov.events(EventQuery(tenant="acme"))
    assert (blocked.status.value, blocked.model, blocked.budget_id) == (
        "blocked", "gpt-4o-mini", "all",
    )  # fmt: skip


def test_the_first_route_served_keeps_no_requested_tag(gov: Governor) -> None:
    decision = ask(gov, "r1")
    assert decision.route == Route(**HOSTED) and decision.skipped == ()
    event = gov.commit("r1", CALL).event
    assert dict(event.subject.tags) == {"backend": "hosted"}


def test_a_commit_naming_another_model_counts_where_it_ran(gov: Governor) -> None:
    cap(gov, "openai", 0, provider="openai")
    cap(gov, "haiku", 1000, model="claude-3-5-haiku")
    cap(gov, "sonnet", 1000, model="claude-sonnet-4")
    assert ask(gov, "r1").route == Route(**SECOND)
    gov.commit("r1", CALL, model="claude-sonnet-4")
    used = {v.budget_id: v.used for v in gov.status(ACME, "anthropic", "claude-sonnet-4")}
    assert used["sonnet"] == 100
    assert {v.budget_id: v.used for v in gov.status(ACME, "anthropic", "claude-3-5-haiku")}[
        "haiku"
    ] == 0


def test_a_retry_replays_the_route_reserved(gov: Governor) -> None:
    cap(gov, "openai", 0, provider="openai")
    first = ask(gov, "r1")
    again = ask(gov, "r1")
    assert again.replayed and again.route == first.route == Route(**SECOND)


def test_a_rate_limited_first_route_falls_back_at_once(gov: Governor) -> None:
    gov.create_budget({"id": "rpm", "tenant": "acme", "meter": "requests", "limit": 1,
                       "window": "rolling:60", "match": {"provider": "openai"}})  # fmt: skip
    assert ask(gov, "r1").route == Route(**HOSTED)
    second = ask(gov, "r2")
    assert second.route == Route(**SECOND)
    assert second.skipped[0].refusals[0].reason is Reason.RATE_LIMITED
    assert second.skipped[0].retry_at is not None


def test_a_model_without_a_price_is_passed_over_under_deny(make_governor: object) -> None:
    gov = make_governor(unknown_model="deny")  # type: ignore[operator]
    routes = [{"provider": "openai", "model": "no-such-model"}, HOSTED]
    decision = ask(gov, "r1", routes)
    assert decision.route == Route(**HOSTED)
    assert decision.skipped[0].refusals[0].reason is Reason.UNKNOWN_MODEL


def test_own_hardware_is_a_declared_price_and_counts(make_governor: object) -> None:
    free = PriceOverride("llama-3-70b", ModelRate(Decimal(0), Decimal(0)),
                         datetime(2020, 1, 1, tzinfo=UTC), provider="self")  # fmt: skip
    gov = make_governor(pricer=CatalogPricer(overrides=[free]), unknown_model="deny")  # type: ignore[operator]
    gov.create_budget({"id": "spend", "tenant": "acme", "meter": "cost", "window": "day",
                       "limit": "0.000001"})  # fmt: skip
    cap(gov, "tokens", 1000)
    decision = ask(gov, "r1", [OWN])
    assert decision.allowed
    event = gov.commit("r1", CALL).event
    assert event.usage.cost_micros == 0 and event.price["source"] != "fallback"
    assert {v.budget_id: v.used for v in gov.status(ACME, "self", "llama-3-70b")}["tokens"] == 100


@pytest.mark.parametrize(
    ("routes", "field"),
    [
        ([], "routes"),
        ([SECOND, HOSTED], "routes[0]"),
        ([HOSTED, HOSTED], "routes"),
        ([HOSTED, {"provider": "x"}], "routes[1].model"),
        ([HOSTED, {**OWN, "weight": 1}], "routes[1].weight"),
        ([HOSTED] + [{"provider": "p", "model": f"m{i}"} for i in range(8)], "routes"),
    ],
)
def test_bad_routes_name_the_field(
    gov: Governor, routes: list[dict[str, object]], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        gov.authorize("r", ACME, "openai", "gpt-4o-mini", CALL, routes=routes)
    assert caught.value.field == field


def test_a_budget_selects_a_backend(gov: Governor, clock: Clock) -> None:
    cap(gov, "hosted", 150, backend="hosted")
    spec = gov.get_budget("hosted", tenant="acme").to_spec()
    assert spec["match"] == {"tags.backend": ["hosted"]}
    assert ask(gov, "r1").route == Route(**HOSTED)
    assert ask(gov, "r2").route == Route(**OWN)  # 200 > 150: both hosted candidates skipped


def test_the_readme_tiers_fall_back_to_own_hardware(make_governor: Any, tmp_path: Path) -> None:
    """The README's system 4 config, loaded as printed: the 51st call runs on own
    hardware, priced at the declared zero."""
    readme = README.read_text()
    section = readme[readme.index("### Routes and sub-caps") :]
    path = tmp_path / "tiers.yaml"
    path.write_text(re.findall(r"```yaml\n(.*?)```", section, re.S)[0])
    pricing = load_pricing(path)
    gov = make_governor(pricer=pricing.pricer)
    for spec in load_plan_specs(path):
        gov.set_plan(spec)
    subject = {"tenant": "relay", "install": "i-7"}
    routes = [{"provider": "hosted", "model": "relay-model", "backend": "hosted"},
              {"provider": "self", "model": "llama-3-70b", "backend": "own"}]  # fmt: skip
    gov.set_plan({**load_plan_specs(path)[0]})  # saved again: no change
    served = []
    for i in range(51):
        decision = gov.authorize(f"r{i}", subject, "hosted", "relay-model", {"credits": 1},
                                 routes=routes)  # fmt: skip
        served.append(decision.route.backend)
        gov.commit(f"r{i}", {"credits": 1})
    assert served == ["hosted"] * 50 + ["own"]
    last = gov.events(EventQuery(tenant="relay"))[-1]
    assert (last.usage.cost_micros, last.price["source"]) == (0, "override")
