"""``ledger archive``: old events leave the ledger, and nothing anyone reads changes."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from allotment.errors import ConfigurationError, ValidationError
from allotment.governor import Governor
from allotment.store.base import EventQuery
from tests.conftest import Clock, drop_postgres, fresh_postgres_url

ANN = {"tenant": "acme", "user": "ann"}
BOB = {"tenant": "acme", "user": "bob"}
BUDGETS = [
    {"id": "day", "tenant": "acme", "meter": "tokens", "window": "day", "limit": 10**9},
    {"id": "ever", "tenant": "acme", "meter": "tokens", "window": "lifetime", "per": "user",
     "limit": 10**9},
    {"id": "month", "tenant": "acme", "meter": "requests", "window": "month", "limit": 10**6},
]  # fmt: skip


@pytest.fixture(params=["sqlite", "postgres"])
def gov(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Governor]:
    url = f"sqlite:///{tmp_path / 'a.db'}" if request.param == "sqlite" else fresh_postgres_url()
    governor = Governor(url, clock=clock)
    for spec in BUDGETS:
        governor.create_budget(spec)
    yield governor
    governor.close()
    if request.param == "postgres":
        drop_postgres(url)


def snapshot(gov: Governor) -> tuple[object, ...]:
    return (
        gov.store.counters(),
        [(v.budget_id, v.used, v.reserved) for s in (ANN, BOB) for v in gov.status(s)],
        [(r.group, r.calls, r.totals) for r in gov.usage("acme", by=["user", "day"])],
    )


def ledger(gov: Governor) -> list[int]:
    return [e.id or 0 for e in gov.events(EventQuery(tenant="acme", limit=10_000))]


def test_archive_keeps_counters_status_usage_and_rebuild(
    gov: Governor, clock: Clock, tmp_path: Path
) -> None:
    now = clock.now
    for day in range(10):
        for i, subject in enumerate((ANN, BOB)):
            gov.record(f"d{day}-{i}", subject, "openai", "gpt-4o", {"output_tokens": 10 + day},
                       occurred_at=now - timedelta(days=day, hours=1))  # fmt: skip
    clock.now = now - timedelta(days=4)
    gov.authorize("old-held", ANN, "openai", "gpt-4o", {"output_tokens": 5}, ttl=6 * 86_400)
    clock.now = now + timedelta(hours=1)
    gov.authorize("now", BOB, "openai", "gpt-4o", {"output_tokens": 5})
    gov.commit("now", {"output_tokens": 7})
    before = snapshot(gov)
    ids_before = ledger(gov)

    cutoff = now - timedelta(days=3, minutes=30)
    stats = gov.archive(cutoff, tmp_path / "old.jsonl.gz")
    with gzip.open(tmp_path / "old.jsonl.gz", "rt") as archived:
        lines = [json.loads(line) for line in archived]
    # The cutoff rounds down to 11:00 three days ago: days 4..9 of each user.
    assert stats.events == len(lines) == 2 * 6
    assert all(line["occurred_at"] < cutoff.replace(minute=0).isoformat() for line in lines)
    assert sorted(ledger(gov) + [line["id"] for line in lines]) == ids_before
    assert stats.request_ids == 12  # the records' ids are forgotten with them

    assert snapshot(gov) == before
    gov.rebuild()
    assert snapshot(gov) == before

    # A late commit of a reservation from before the cutoff lands before it.
    gov.commit("old-held", {"output_tokens": 4})
    live = snapshot(gov)
    gov.rebuild()
    assert snapshot(gov) == live
    # The second archive takes everything that is old, the late event included.
    second = gov.archive(clock.now - timedelta(hours=1), tmp_path / "newer.jsonl.gz")
    assert (second.events, len(ledger(gov))) == (2 * 4 + 1, 1)
    assert snapshot(gov) == live
    gov.rebuild()
    assert snapshot(gov) == live


def test_archive_refuses_bad_input_and_existing_files(
    gov: Governor, clock: Clock, tmp_path: Path
) -> None:
    (tmp_path / "taken.jsonl.gz").write_bytes(b"")
    with pytest.raises(ConfigurationError, match="never overwritten"):
        gov.archive(clock.now - timedelta(days=1), tmp_path / "taken.jsonl.gz")
    with pytest.raises(ValidationError, match="before"):
        gov.archive(clock.now + timedelta(days=1), tmp_path / "x.jsonl.gz")
    with pytest.raises(ValidationError, match="before"):
        gov.archive(clock.now.replace(tzinfo=None), tmp_path / "y.jsonl.gz")


def test_memory_store_cannot_archive(clock: Clock, tmp_path: Path) -> None:
    gov = Governor("memory://", clock=clock)
    gov.record("r", ANN, "openai", "gpt-4o", {"output_tokens": 1},
               occurred_at=clock.now - timedelta(days=2))  # fmt: skip
    with pytest.raises(ConfigurationError, match="memory"):
        gov.archive(clock.now - timedelta(days=1), tmp_path / "m.jsonl.gz")
    assert len(ledger(gov)) == 1
