"""Bad input gets an error naming the field, and nothing is written."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from allotment.errors import ValidationError
from allotment.governor import Governor

GOOD_SUBJECT = {"tenant": "acme", "user": "u1"}
BUDGET = {"id": "acme-day", "tenant": "acme", "meter": "tokens", "window": "day", "limit": 1000}

BAD_USAGE = [
    ({"input_tokens": -1}, "estimate.input_tokens"),
    ({"input_tokens": float("nan")}, "estimate.input_tokens"),
    ({"input_tokens": 1.5}, "estimate.input_tokens"),
    ({"output_tokens": True}, "estimate.output_tokens"),
    ({"output_tokens": 10**16}, "estimate.output_tokens"),
    ({"output_tokens": "12"}, "estimate.output_tokens"),
    ({"tokens": 5}, "estimate.tokens"),
    ({"audio_seconds": "1.0001"}, "estimate.audio_seconds"),
    ({"cost": "Infinity"}, "estimate.cost"),
    ({"cost": float("inf")}, "estimate.cost"),
    ([1, 2], "estimate"),
]

BAD_SUBJECTS = [
    ({"tenant": ""}, "subject.tenant"),
    ({"tenant": "   "}, "subject.tenant"),
    ({"user": "u1"}, "subject.tenant"),
    ({"tenant": 7}, "subject.tenant"),
    ({"tenant": "acme", "user": "x" * 300}, "subject.user"),
    ({"tenant": "acme", "groups": "eng"}, "subject.groups"),
    ({"tenant": "acme", "colour": "red"}, "subject.colour"),
    ({"tenant": "a\x00b"}, "subject.tenant"),
]

BAD_BUDGETS = [
    ({"meter": "watts"}, "meter"),
    ({"window": "fortnight"}, "window.kind"),
    ({"window": "day@Mars/Olympus"}, "window.tz"),
    ({"window": {"kind": "rolling"}}, "window.seconds"),
    ({"limit": -5}, "limit"),
    ({"limit": 1.5}, "limit"),
    ({"limit": True}, "limit"),
    ({"soft": [80, 50]}, "soft"),
    ({"soft": [150]}, "soft[0]"),
    ({"mode": "loud"}, "mode"),
    ({"per": "planet"}, "per"),
    ({"match": {"colour": "red"}}, "match.colour"),
    ({"id": ""}, "id"),
    ({"tenant": ""}, "tenant"),
    ({"bogus": 1}, "bogus"),
    ({"currency": "usd", "meter": "cost"}, "currency"),
]


def nothing_written(gov: Governor) -> None:
    assert gov.events() == []
    assert gov.store.counters() == {}
    assert [b.id for b in gov.list_budgets()] == ["acme-day"]


@pytest.fixture
def g(make_governor: Callable[..., Governor]) -> Governor:
    gov = make_governor()
    gov.create_budget(BUDGET)
    return gov


@pytest.mark.parametrize(("usage", "field"), BAD_USAGE)
def test_bad_usage(g: Governor, usage: Any, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        g.authorize("r1", GOOD_SUBJECT, "openai", "gpt-4o", usage)
    assert info.value.field == field
    with pytest.raises(ValidationError):
        g.record("r2", GOOD_SUBJECT, "openai", "gpt-4o", usage)
    nothing_written(g)


@pytest.mark.parametrize(("subject", "field"), BAD_SUBJECTS)
def test_bad_subject(g: Governor, subject: Any, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        g.authorize("r1", subject, "openai", "gpt-4o", {"input_tokens": 1})
    assert info.value.field == field
    nothing_written(g)


@pytest.mark.parametrize(("change", "field"), BAD_BUDGETS)
def test_bad_budget(g: Governor, change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        g.create_budget(BUDGET | {"id": "other"} | change)
    assert info.value.field == field
    with pytest.raises(ValidationError):
        g.update_budget("acme-day", **{k: v for k, v in change.items() if k != "id"} or {"id": ""})
    nothing_written(g)
    assert g.get_budget("acme-day").limit == 1000


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda g: g.authorize("", GOOD_SUBJECT, "openai", "m"), "request_id"),
        (lambda g: g.authorize("r", GOOD_SUBJECT, "", "m"), "provider"),
        (lambda g: g.authorize("r", GOOD_SUBJECT, "openai", None), "model"),
        (lambda g: g.authorize("r", GOOD_SUBJECT, "openai", "m", ttl=0), "ttl"),
        (lambda g: g.authorize("r", GOOD_SUBJECT, "openai", "m", ttl=True), "ttl"),
        (lambda g: g.commit("r", {"input_tokens": 1}, status="meh"), "status"),
        (
            lambda g: g.record("r", GOOD_SUBJECT, "o", "m", {}, occurred_at=datetime(2026, 1, 1)),  # noqa: DTZ001
            "occurred_at",
        ),
        (lambda g: g.usage("acme", by=["session"]), "by"),
        (lambda g: g.usage("", by=["feature"]), "subject.tenant"),
    ],
)
def test_bad_arguments(g: Governor, call: Callable[[Governor], Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        call(g)
    assert info.value.field == field
    nothing_written(g)


def test_decimal_human_amounts_are_exact(g: Governor) -> None:
    g.record("r", GOOD_SUBJECT, "o", "m", {"cost": Decimal("0.000001"), "audio_seconds": "1.5"})
    event = g.events()[0]
    assert (event.usage.cost_micros, event.usage.audio_ms) == (1, 1500)


NUL = "a\x00b"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda g: g.authorize(NUL, GOOD_SUBJECT, "openai", "m"), "request_id"),
        (lambda g: g.authorize("r", GOOD_SUBJECT, NUL, "m"), "provider"),
        (lambda g: g.authorize("r", GOOD_SUBJECT, "openai", NUL), "model"),
        (lambda g: g.commit(NUL, {"input_tokens": 1}), "request_id"),
        (lambda g: g.commit("r", {}, reason=NUL), "reason"),
        (lambda g: g.commit("r", {}, provider=NUL), "provider"),
        (lambda g: g.record("r", GOOD_SUBJECT, "o", NUL, {}), "model"),
        (lambda g: g.record("r", GOOD_SUBJECT, "o", "m", {}, reason=NUL), "reason"),
        (lambda g: g.release(NUL), "request_id"),
        (lambda g: g.release("r", NUL), "reason"),
        (lambda g: g.create_key("service", "acme", name=NUL), "name"),
        (lambda g: g.create_key("service", "acme", name=7), "name"),
        (lambda g: g.create_key("service", "acme", name="x" * 300), "name"),
        (lambda g: g.create_budget(BUDGET | {"id": "m", "match": {"user": NUL}}), "match.user"),
        (lambda g: g.status({"tenant": "acme", "tags": {"t": NUL}}), "subject.tags.t"),
        (lambda g: g.authorize("r", GOOD_SUBJECT, "o", "m", {"cost": "1e400000"}), "estimate.cost"),
        (lambda g: g.commit("r", {"cost": "1e5000"}), "usage.cost"),
        (lambda g: g.commit("r", {"cost": "1e-999999999"}), "usage.cost"),
        (lambda g: g.record("r", GOOD_SUBJECT, "o", "m", {"audio_seconds": "1e999999"}),
         "usage.audio_seconds"),
        (lambda g: g.create_budget(BUDGET | {"id": "m", "limit": "1e400000"}), "limit"),
        (lambda g: g.set_rate("USD", "EUR", "1e400000"), "rate.rate"),
    ],
)  # fmt: skip
def test_hostile_text_and_amounts(g: Governor, call: Callable[[Governor], Any], field: str) -> None:
    """The same rule on every store: a ValidationError naming the field, never a store error."""
    assert g.authorize("r", GOOD_SUBJECT, "openai", "m", {"input_tokens": 1}).allowed
    g.release("r")
    before = len(g.events())
    with pytest.raises(ValidationError) as info:
        call(g)
    assert info.value.field == field
    assert len(g.events()) == before


def test_a_nul_byte_is_refused_even_where_budgets_fail_open(g: Governor) -> None:
    """A data error is bad input, never a store outage that fail-open would wave through."""
    g.create_budget({"id": "open", "tenant": "acme", "meter": "tokens", "window": "day",
                     "limit": 10, "failure": "fail_open"})  # fmt: skip
    with pytest.raises(ValidationError):
        g.authorize("r\x00", GOOD_SUBJECT, "openai", "m", {"input_tokens": 1})


@pytest.mark.parametrize(
    ("query", "field"),
    [({"tenant": NUL}, "tenant"), ({"price_source": NUL}, "price_source"),
     ({"after_id": 10**30}, "after_id"), ({"after_id": -1}, "after_id")],
)  # fmt: skip
def test_bad_ledger_queries(g: Governor, query: dict[str, Any], field: str) -> None:
    from allotment.store.base import EventQuery

    with pytest.raises(ValidationError) as info:
        g.events(EventQuery(**query))
    assert info.value.field == field


SECRET_TAGS = {"openai_api_key": "sk-live-1", "auth_token": "t0k", "client_secret": "s",
               "DB_PASSWORD": "p", "byok": "true"}  # fmt: skip


def test_secret_tags_never_reach_the_ledger(g: Governor) -> None:
    """System 3: metadata named like a key, token, secret or password is dropped at the boundary."""
    subject = {"tenant": "acme", "tags": SECRET_TAGS}
    assert g.authorize("r1", subject, "openai", "m", {"input_tokens": 1}).allowed
    g.commit("r1", {"input_tokens": 1})
    g.record("r2", subject, "openai", "m", {"input_tokens": 1})
    g.record_many([{"request_id": "r3", "subject": subject, "provider": "o", "model": "m",
                    "usage": {}}])  # fmt: skip
    for event in g.events():
        assert dict(event.subject.tags) == {"byok": "true"}, event
    g.store.close()
    if g.store.url.startswith("sqlite"):
        path = Path(g.store.url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert b"sk-live-1" not in raw and b"t0k" not in raw


def test_a_selector_on_a_secret_tag_is_refused(g: Governor) -> None:
    with pytest.raises(ValidationError) as info:
        g.create_budget(BUDGET | {"id": "s", "match": {"tags.api_key": "x"}})
    assert info.value.field == "match.tags.api_key"
