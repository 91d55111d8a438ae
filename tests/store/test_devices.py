"""Device ids are stored hashed, on every backend, and still count and match."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from allotment.errors import ValidationError
from allotment.governor import Governor
from allotment.store.base import EventQuery

LAPTOP = {"tenant": "desk", "user": "cust-1", "device": "laptop-7F3A"}
PHONE = {"tenant": "desk", "user": "cust-1", "device": "phone-22"}
HASHED = re.compile(r"d_[0-9a-f]{32}")


def per_device(**extra: object) -> dict[str, object]:
    return {"id": "per-device", "tenant": "desk", "meter": "tokens", "window": "day",
            "per": "device", "limit": 100} | extra  # fmt: skip


def test_the_ledger_holds_only_hashes(gov: Governor) -> None:
    gov.create_budget(per_device())
    gov.authorize("r1", LAPTOP, "openai", "gpt-4o-mini", {"output_tokens": 10})
    gov.commit("r1", {"output_tokens": 5})
    gov.record("r2", PHONE, "openai", "gpt-4o-mini", {"output_tokens": 3})
    devices = [e.subject.device for e in gov.events(EventQuery(tenant="desk"))]
    assert len(devices) == 2 and all(HASHED.fullmatch(d or "") for d in devices)
    assert devices[0] != devices[1]
    assert "laptop-7F3A" not in repr(gov.store.counters())


def test_per_device_budgets_and_status_work_on_raw_ids(gov: Governor) -> None:
    gov.create_budget(per_device())
    assert gov.authorize("r1", LAPTOP, "openai", "gpt-4o-mini", {"output_tokens": 100}).allowed
    assert not gov.authorize("r2", LAPTOP, "openai", "gpt-4o-mini", {"output_tokens": 1}).allowed
    assert gov.authorize("r3", PHONE, "openai", "gpt-4o-mini", {"output_tokens": 100}).allowed
    [laptop] = gov.status(LAPTOP)
    assert (laptop.reserved, HASHED.fullmatch(laptop.member) is not None) == (100, True)
    hashed = {**LAPTOP, "device": laptop.member}  # an id copied from the ledger
    assert gov.status(hashed)[0].reserved == 100


def test_a_device_selector_matches_the_raw_id(gov: Governor) -> None:
    spec = {"id": "laptop-only", "tenant": "desk", "meter": "requests", "window": "day",
            "limit": 1, "match": {"device": "laptop-7F3A"}}  # fmt: skip
    budget = gov.create_budget(spec)
    [(dimension, (value,))] = budget.match
    assert dimension == "device" and HASHED.fullmatch(value)
    assert gov.authorize("r1", LAPTOP, "openai", "gpt-4o-mini").allowed
    assert not gov.authorize("r2", LAPTOP, "openai", "gpt-4o-mini").allowed
    assert gov.authorize("r3", PHONE, "openai", "gpt-4o-mini").budgets == ()
    assert gov.update_budget("laptop-only", limit=2).match == budget.match  # stays hashed


def test_a_device_pattern_is_refused_naming_the_field(gov: Governor) -> None:
    with pytest.raises(ValidationError) as refused:
        gov.create_budget(per_device(id="b", match={"device": "laptop-*"}))
    assert refused.value.field == "match.device"
    assert gov.list_budgets("desk") == []


def test_every_process_on_a_store_hashes_alike(make_governor: Callable[..., Governor]) -> None:
    first, second = make_governor(), make_governor()
    first.record("r1", LAPTOP, "openai", "gpt-4o-mini", {"output_tokens": 1})
    second.record("r2", LAPTOP, "openai", "gpt-4o-mini", {"output_tokens": 1})
    devices = {e.subject.device for e in second.events(EventQuery(tenant="desk"))}
    assert len(devices) == 1


def test_no_raw_device_id_reaches_the_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/desk.db"
    with Governor(url) as gov:
        gov.create_budget(per_device())
        gov.authorize("r1", LAPTOP, "openai", "gpt-4o-mini", {"output_tokens": 10})
        gov.commit("r1", {"output_tokens": 5})
    with Governor(url) as again:  # a new process, the same hashes
        [view] = again.status(LAPTOP)
        assert view.used == 5
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"laptop-7F3A" not in stored and b"cust-1" in stored
