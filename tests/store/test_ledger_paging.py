"""Ledger pages at scale: every filter of the events query reads an index in id order.

``GET /v1/events`` pages a tenant's ledger by cursor. A page must come from an
index that yields matching events in id order, so the read stops after
``limit`` rows; a plan that sorts the matches costs as much as the tenant's
whole ledger, for every page (on SQLite, before migration 5: 17 ms a page of
one tenant in a million events, 89 ms with a status filter; ``bench.ledger``).
The plans are checked for every combination of filters the query builder
produces, and paging is checked to return each event once, in order, on both
SQL stores.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from allotment.core.ledger import Event
from allotment.governor import Governor
from allotment.store._sql import SqlTx
from allotment.store.base import EventQuery
from allotment.store.postgres import _pg
from tests.conftest import PG_SERVER, Clock, drop_postgres, fresh_postgres_url

TENANTS = 50  # the tenant read, t0, holds one event in 50: its index beats the ledger's


def _items(clock: Clock, count: int) -> list[dict[str, Any]]:
    """Calls of 50 tenants, one in 9 an error, one in 7 priced by the fallback,
    occurring out of id order over 30 days."""
    return [
        {
            "request_id": f"r{i}",
            "subject": {"tenant": f"t{i % TENANTS}", "user": f"u{i % 3}"},
            "provider": "openai",
            "model": "no-such-model" if i % 7 == 0 else "gpt-4o-mini",
            "usage": {"input_tokens": 10, "output_tokens": 5},
            "status": "error" if i % 9 == 0 else "success",
            "occurred_at": clock.now - timedelta(days=i % 30, seconds=i),
        }
        for i in range(count)
    ]


def _queries(now: datetime, limit: int = 100) -> Iterator[EventQuery]:
    """Every combination of the documented filters (a flagged and a plain price source)."""
    times = [(None, None), (now - timedelta(days=7), None), (None, now - timedelta(days=3)),
             (now - timedelta(days=7), now - timedelta(days=3))]  # fmt: skip
    for tenant, status, source, (since, until) in itertools.product(
        (None, "t0"), (None, "error"), (None, "fallback", "catalog"), times
    ):
        yield EventQuery(tenant=tenant, status=status, price_source=source, since=since,
                         until=until, limit=limit)  # fmt: skip


class _Capture(SqlTx):
    """Records the statement ``SqlTx.events`` would run instead of running it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Sequence[Any]]] = []

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.seen.append((sql, params))
        return []


def _statement(query: EventQuery) -> tuple[str, Sequence[Any]]:
    capture = _Capture()
    list(capture.events(query))
    [statement] = capture.seen
    return statement


def _problems(query: EventQuery, plan: list[str], tenant_index: bool) -> list[str]:
    """What is wrong with ``plan`` (its lines) for ``query``; empty when nothing is."""
    text = " | ".join(plan)
    wrong = []
    if "TEMP B-TREE" in text or "Sort" in text:
        wrong.append("sorts")
    if "Seq Scan" in text or any(line.startswith("SCAN events") for line in plan):
        wrong.append("scans the table")
    if query.tenant is not None and not tenant_index:
        wrong.append("not a tenant's index")
    return [f"{query}: {', '.join(wrong)}: {text}"] if wrong else []


@pytest.mark.parametrize("analyzed", [False, True], ids=["no-stats", "analyzed"])
def test_sqlite_reads_every_filter_in_index_order(
    tmp_path: Path, clock: Clock, analyzed: bool
) -> None:
    """No sort and no table scan, and a tenant's page from an index that starts with tenant,
    with and without the statistics ANALYZE (or ``PRAGMA optimize``) leaves."""
    path = tmp_path / "plans.db"
    with Governor(f"sqlite:///{path}", clock=clock) as gov:
        gov.record_many(_items(clock, 3000))
    with sqlite3.connect(path) as conn:
        if analyzed:
            conn.execute("ANALYZE")
        problems = []
        for query in _queries(clock.now):
            sql, params = _statement(query)
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            uses = any(line.startswith("SEARCH events USING INDEX events_tenant_") for line in plan)
            problems += _problems(query, plan, uses)
    assert problems == []


@pytest.mark.postgres
def test_postgres_reads_every_filter_in_index_order(clock: Clock) -> None:
    """The same on PostgreSQL. Its planner weighs costs: on a table this small it
    would rather scan the table or sort a few rows, so those plans are priced out
    (``enable_*``), and an index that reads in id order must remain."""
    url = fresh_postgres_url()
    try:
        with Governor(url, clock=clock) as gov:
            gov.record_many(_items(clock, 3000))
        schema = url.rsplit("schema=", 1)[1]
        with psycopg.connect(PG_SERVER, options=f"-c search_path={schema}") as conn:
            conn.execute("ANALYZE events")
            conn.execute("SET LOCAL enable_seqscan = off")
            conn.execute("SET LOCAL enable_bitmapscan = off")
            conn.execute("SET LOCAL enable_sort = off")
            problems = []
            for query in _queries(clock.now):
                sql, params = _statement(query)
                plan = [row[0] for row in conn.execute(f"EXPLAIN {_pg(sql)}", params)]
                uses = any("Index Cond: ((tenant =" in line for line in plan)
                problems += _problems(query, plan, uses)
    finally:
        drop_postgres(url)
    assert problems == []


def _matches(event: Event, query: EventQuery) -> bool:
    return (
        query.tenant in (None, event.subject.tenant)
        and query.status in (None, event.status)
        and query.price_source in (None, event.price.get("source"))
        and (query.since is None or event.occurred_at >= query.since)
        and (query.until is None or event.occurred_at < query.until)
    )


def _paged(gov: Governor, query: EventQuery) -> list[int | None]:
    """The ids of every page of ``query``, following the cursor to the end."""
    ids: list[int | None] = []
    while page := gov.events(replace(query, after_id=ids[-1] if ids else 0)):
        ids += [event.id for event in page]
        if len(page) < query.limit:
            break
    return ids


def test_paging_returns_every_event_once_in_order(shared_url: str, clock: Clock) -> None:
    """Following ``next_cursor`` through any filter yields exactly the matching events."""
    with Governor(shared_url, clock=clock) as gov:
        gov.record_many(_items(clock, 600))
        everything = gov.events(EventQuery(limit=10_000))
        assert sorted(e.request_id for e in everything) == sorted(f"r{i}" for i in range(600))
        assert [e.id for e in everything] == sorted({e.id for e in everything})
        for query in _queries(clock.now, limit=9):
            expected = [e.id for e in everything if _matches(e, query)]
            assert _paged(gov, query) == expected, query
