"""Positional codecs follow the types they encode (issue 17: one home per rule).

``Usage``, ``Charge``, ``Counter`` and ``Applied`` are named tuples made on
the hot path by shortcuts past their constructors (``usage_from_row``,
``charge_from_row``, ``counter_from_row``, ``engine._applied``), and stores
keep events, reservations and rollups as rows of values in a fixed order
(the memory store's row codec, ``store/_rows.py`` for SQL). Neither the
constructors nor the type checker see those positions: these tests do. Each
fills every field with a value of its own, so a field added to a type and not
to a codec, or two positions swapped, fails here, and each shortcut is
compared with the plain path it stands in for.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from allotment.core.budgets import Budget, Call
from allotment.core.engine import Applied, Counter, counter_from_row, decide, resolve
from allotment.core.ledger import (
    Charge,
    Event,
    EventStatus,
    Reservation,
    ReservationState,
    charge_from_row,
)
from allotment.core.subjects import Subject
from allotment.core.usage import USAGE_FIELDS, Usage, parse_usage, usage_from_row
from allotment.store._rows import (
    EVENT_COLUMNS,
    ROLLUP_COLUMNS,
    ROLLUP_KEY_COLUMNS,
    event_from_row,
    event_values,
    reservation_from_row,
    reservation_values,
    rollup_from_row,
)
from allotment.store.memory import _MemoryTx, _State

NOW = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
SUBJECT = Subject("acme", "u1", ("eng", "ops"), "k1", "a1", "s1", "chat", "d1", "i1",
                  (("env", "prod"),))  # fmt: skip
#: every usage field a value of its own, in field order
USAGE = Usage(**{name: 100 + i for i, name in enumerate(USAGE_FIELDS)})
ESTIMATE = Usage(**{name: 200 + i for i, name in enumerate(USAGE_FIELDS)})
CHARGES = (Charge("acme#day", "u1", 1_700_000_000, 7), Charge("week", "*", 1_699_000_000, 9))
#: every field of an event, none at its default
EVENT = dict(request_id="r1", status=EventStatus.ERROR, subject=SUBJECT, provider="openai",
             model="gpt-4o", usage=USAGE, occurred_at=NOW, recorded_at=NOW + timedelta(seconds=3),
             currency="EUR", reason="timeout", budget_id="day",
             price={"source": "catalog", "amount_micros": 123}, payload_hash="p" * 32, id=42,
             estimate=ESTIMATE)  # fmt: skip
#: every field of a finished reservation, none at its default
RESERVATION = dict(request_id="r1", subject=SUBJECT, provider="openai", model="gpt-4o",
                   estimate=ESTIMATE, charges=CHARGES, authorized_at=NOW,
                   expires_at=NOW + timedelta(minutes=5), payload_hash="p" * 32,
                   state=ReservationState.COMMITTED, commit_hash="c" * 32, event_id=42,
                   ttl=60, max_until=NOW + timedelta(hours=2), slots=2)  # fmt: skip


def full(kind: type[Any], values: dict[str, Any]) -> Any:
    """``kind(**values)``, once ``values`` names every field (a new field needs a value here)."""
    assert set(values) == {f.name for f in fields(kind)}, "give the new field a value above"
    return kind(**values)


def a_budget() -> Budget:
    return Budget.from_spec({"id": "day", "meter": "tokens", "window": "day", "limit": 1000})


# Usage
def test_usage_keeps_each_field_in_its_place() -> None:
    assert len(USAGE) == len(Usage._fields) == len(Usage())
    assert [getattr(USAGE, name) for name in USAGE_FIELDS] == list(range(100, 112))
    assert USAGE_FIELDS[-1] == "cost_micros"  # with_cost and the rollups rely on it


def test_usage_shortcuts_match_the_plain_path() -> None:
    assert usage_from_row(USAGE.as_tuple()) == USAGE
    assert type(usage_from_row(list(USAGE))) is Usage
    assert parse_usage(USAGE.to_dict()) == USAGE
    assert parse_usage({}) == Usage()
    assert USAGE.with_cost(5) == USAGE._replace(cost_micros=5)


def test_usage_from_row_refuses_a_row_one_field_short() -> None:
    with pytest.raises(AssertionError, match="Usage"):
        usage_from_row(USAGE.as_tuple()[:-1])


# Charge
def test_charge_from_row_matches_the_constructor() -> None:
    for charge in CHARGES:
        assert charge_from_row(tuple(charge)) == charge
        assert type(charge_from_row(list(charge))) is Charge
    with pytest.raises(AssertionError, match="Charge"):
        charge_from_row(tuple(CHARGES[0])[:-1])


def test_decide_charges_as_the_plain_path_would() -> None:
    applied = resolve([a_budget()], Call(SUBJECT, "openai", "gpt-4o"), NOW)
    decision, charges = decide("r1", applied, [Counter()], USAGE)
    assert decision.allowed
    [hit] = applied
    assert charges == (hit.charge(USAGE.tokens),)
    assert all(len(c) == len(Charge._fields) for c in charges)


# Counter and Applied
def test_counter_from_row_matches_the_constructor() -> None:
    assert counter_from_row([5, 6]) == Counter(5, 6)
    with pytest.raises(AssertionError, match="Counter"):
        counter_from_row([5])


def test_resolve_makes_the_applied_the_constructor_would() -> None:
    [hit] = resolve([a_budget()], Call(SUBJECT, "openai", "gpt-4o"), NOW)
    assert type(hit) is Applied and len(hit) == len(Applied._fields)
    assert hit == Applied(hit.budget, hit.member, hit.span)


def test_memory_counter_rows_read_back_as_counters() -> None:
    tx = _MemoryTx(_State())
    [hit] = resolve([a_budget()], Call(SUBJECT, "openai", "gpt-4o"), NOW)
    tx.add([(hit.budget.key, hit.member, hit.span.bucket, 5, 6)])
    [counter] = tx.read([hit])
    assert counter == Counter(used=5, reserved=6) and len(counter) == len(Counter._fields)


# the memory store's rows
def test_memory_event_rows_round_trip() -> None:
    state, event = _State(), full(Event, EVENT)
    row = state.event_row(event)
    assert len(row) == len(fields(Event))
    assert state.event(row) == event


def test_memory_reservation_rows_round_trip() -> None:
    state, reservation = _State(), full(Reservation, RESERVATION)
    row = state.reservation_row(reservation)
    assert isinstance(row, tuple) and len(row) == len(fields(Reservation))
    assert state.reservation(row) == reservation


# the SQL stores' rows
def test_sql_event_rows_round_trip() -> None:
    event = full(Event, EVENT)
    row = (event.id, *event_values(event))
    assert len(row) == len(EVENT_COLUMNS)
    assert event_from_row(row) == event


def test_sql_reservation_rows_round_trip() -> None:
    reservation = full(Reservation, RESERVATION)
    assert reservation_from_row(reservation_values(reservation)) == reservation


def test_sql_rollup_rows_name_every_usage_total() -> None:
    key = ("acme", 1_700_000_000, "u1", "k1", "a1", "chat", "openai", "gpt-4o", "success")
    values = (1, *USAGE)
    assert ROLLUP_COLUMNS == (*ROLLUP_KEY_COLUMNS, "calls", *USAGE_FIELDS)
    assert len(key) == len(ROLLUP_KEY_COLUMNS)
    assert rollup_from_row((*key, *values)) == (key, values)
