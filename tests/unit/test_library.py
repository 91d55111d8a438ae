"""Library surface beyond the store contract: hold, async, config files, store URLs."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest

from allotment import (
    AsyncGovernor,
    BudgetExceeded,
    ConfigurationError,
    Governor,
    MemoryStore,
    ReservationState,
    open_store,
)
from allotment.store.base import EventQuery
from allotment.store.migrations.sqlite import MIGRATIONS

SUBJECT = {"tenant": "acme", "user": "u1"}
SPEC = {"id": "d", "tenant": "acme", "meter": "tokens", "window": "day", "limit": 100}


def test_hold_commits_or_releases() -> None:
    gov = Governor("memory://")
    gov.create_budget(SPEC)
    with gov.hold(SUBJECT, "openai", "m", {"output_tokens": 50}) as h:
        h.commit({"output_tokens": 30})
    with pytest.raises(RuntimeError), gov.hold(SUBJECT, "openai", "m", {"output_tokens": 50}):
        raise RuntimeError("provider failed")
    with gov.hold(SUBJECT, "openai", "m", {"output_tokens": 50}) as forgotten:
        pass
    assert gov.release(forgotten.request_id) is ReservationState.RELEASED
    assert [e.reason for e in gov.events(EventQuery(status="released"))] == [  # type: ignore[arg-type]
        "exception",
        "not_committed",
    ]
    with pytest.raises(BudgetExceeded) as info:
        gov.hold(SUBJECT, "openai", "m", {"output_tokens": 71})
    assert info.value.budget_id == "d" and info.value.remaining == 70
    assert gov.status(SUBJECT)[0].used == 30


def test_hold_estimates_a_provider_request() -> None:
    gov = Governor("memory://")
    gov.create_budget(SPEC)
    request = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 40}
    with gov.hold(SUBJECT, "openai", "gpt-4o-mini", request=request) as h:
        assert gov.status(SUBJECT)[0].reserved > 40  # max_tokens plus the prompt
        h.commit({"output_tokens": 3})


def test_async_governor_matches_the_sync_one() -> None:
    async def main() -> None:
        gov = AsyncGovernor("memory://")
        await gov.create_budget(SPEC)
        decision = await gov.authorize("r1", SUBJECT, "openai", "m", {"output_tokens": 60})
        assert decision.allowed
        await gov.commit("r1", {"output_tokens": 60})
        async with gov.hold(SUBJECT, "openai", "m", {"output_tokens": 10}) as h:
            await h.commit({"output_tokens": 10})
        assert (await gov.status(SUBJECT))[0].used == 70
        refused = await gov.authorize("r2", SUBJECT, "openai", "m", {"output_tokens": 31})
        assert not refused.allowed
        await gov.close()

    asyncio.run(main())


def test_budgets_from_yaml_and_toml(tmp_path: Path) -> None:
    yaml_file = tmp_path / "b.yaml"
    yaml_file.write_text(
        "budgets:\n"
        "  - {id: d, tenant: acme, meter: tokens, window: day, limit: 100}\n"
        "  - id: c\n    tenant: acme\n    meter: cost\n    window: month\n    limit: '2.50'\n"
    )
    toml_file = tmp_path / "b.toml"
    toml_file.write_text(
        '[[budgets]]\nid = "w"\ntenant = "acme"\nmeter = "requests"\nwindow = "week"\nlimit = 5\n'
    )
    gov = Governor("memory://")
    gov.load_budgets(yaml_file)
    gov.load_budgets(toml_file)
    assert {b.id: b.limit for b in gov.list_budgets()} == {"c": 2_500_000, "d": 100, "w": 5}
    bad = tmp_path / "b.json"
    bad.write_text("{}")
    with pytest.raises(ConfigurationError):
        gov.load_budgets(bad)
    (tmp_path / "x.yaml").write_text("budgets: 3\n")
    with pytest.raises(ConfigurationError):
        gov.load_budgets(tmp_path / "x.yaml")


def test_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    with pytest.raises(ConfigurationError, match="unknown store URL scheme"):
        open_store("mongodb://localhost")
    with pytest.raises(ConfigurationError, match="synchronous"):
        open_store(f"sqlite:///{tmp_path}/a.db?synchronous=never")
    with pytest.raises(ConfigurationError, match=r"memory://"):
        open_store("sqlite:///:memory:")
    store = open_store(f"sqlite:///{tmp_path}/a.db?synchronous=full")
    checkpointer = store._checkpointer  # type: ignore[attr-defined]
    assert checkpointer._thread.is_alive()
    store.close()
    assert not checkpointer._thread.is_alive() and checkpointer.failures == 0


def test_sqlite_schema_is_versioned_and_reopens(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    with Governor(url) as gov:
        gov.create_budget(SPEC)
        gov.record("p", SUBJECT, "openai", "m", {"input_tokens": 5})
    with Governor(url) as again:
        assert again.store.schema_version() == len(MIGRATIONS)  # type: ignore[attr-defined]
        assert again.status(SUBJECT)[0].used == 5


#: what migrations 5 (ledger page indexes) and 6 (events.estimate) did, undone
UNDO_5_AND_6 = """
    DROP INDEX events_tenant_id; DROP INDEX events_tenant_status; DROP INDEX events_tenant_flagged;
    CREATE INDEX events_tenant_time ON events (tenant, occurred_at);
    ALTER TABLE events DROP COLUMN estimate;
"""


#: what migration 10 (leases) did, undone
UNDO_10 = """
    DROP TABLE lease_slots;
    ALTER TABLE reservations DROP COLUMN max_until;
    ALTER TABLE reservations DROP COLUMN slots;
    ALTER TABLE reservations DROP COLUMN ttl;
    DELETE FROM schema_migrations WHERE version >= 10;
"""

#: what migration 9 (plans and their assignments) did, undone
UNDO_9 = """
    DROP TABLE plan_assignments; DROP TABLE plans;
    DELETE FROM schema_migrations WHERE version >= 9;
"""

#: what migration 8 (credit pools) did, undone
UNDO_8 = """
    DROP TABLE topups; DROP TABLE credit_entries; DROP TABLE grants;
    DELETE FROM schema_migrations WHERE version >= 8;
"""

#: what migration 7 (budgets stored under tenant#id) did, undone
UNDO_7 = """
    UPDATE reservations SET charges = (
        SELECT json_group_array(json_array(
            substr(json_extract(c.value, '$[0]'), instr(json_extract(c.value, '$[0]'), '#') + 1),
            json_extract(c.value, '$[1]'), json_extract(c.value, '$[2]'),
            json_extract(c.value, '$[3]')))
        FROM json_each(reservations.charges) AS c)
    WHERE charges != '[]';
    UPDATE counters SET budget_key = substr(budget_key, instr(budget_key, '#') + 1);
    UPDATE counter_baseline SET budget_key = substr(budget_key, instr(budget_key, '#') + 1);
    ALTER TABLE counters RENAME COLUMN budget_key TO budget_id;
    ALTER TABLE counter_baseline RENAME COLUMN budget_key TO budget_id;
    CREATE TABLE budgets_v1 (id TEXT PRIMARY KEY, tenant TEXT, spec TEXT NOT NULL);
    INSERT INTO budgets_v1 SELECT id, tenant, spec FROM budgets;
    DROP TABLE budgets;
    ALTER TABLE budgets_v1 RENAME TO budgets;
    CREATE INDEX budgets_tenant ON budgets (tenant);
"""


def test_sqlite_upgrades_an_older_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    with Governor(url) as gov:
        gov.record("p", SUBJECT, "openai", "m", {"input_tokens": 5})
    conn = sqlite3.connect(tmp_path / "old.db")  # roll the file back to schema version 1
    conn.executescript(UNDO_10 + UNDO_9 + UNDO_8 + UNDO_7)
    conn.execute("DROP TABLE api_keys")
    conn.execute("DROP TABLE counter_baseline")
    conn.execute("DROP INDEX reservations_done_time")
    conn.executescript(UNDO_5_AND_6)
    conn.execute("DELETE FROM schema_migrations WHERE version > 1")
    conn.commit()
    conn.close()
    with Governor(url) as gov:
        assert gov.store.schema_version() == len(MIGRATIONS)  # type: ignore[attr-defined]
        key, _ = gov.create_key("viewer", "acme")
        assert [k.id for k in gov.list_keys("acme")] == [key.id]
        assert len(gov.events()) == 1


def test_sqlite_upgrade_keys_reservations_by_tenant_and_keeps_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/v3.db"
    with Governor(url) as gov:
        gov.create_budget(SPEC)
        gov.authorize("r", SUBJECT, "openai", "m", {"input_tokens": 5})
        gov.record("p", SUBJECT, "openai", "m", {"input_tokens": 7})
    # Roll the reservations table back to its version-1 shape (request id alone as key).
    [v1_table] = re.findall(
        r"CREATE TABLE reservations \(.*?\) WITHOUT ROWID", MIGRATIONS[0][2], re.S
    )
    conn = sqlite3.connect(tmp_path / "v3.db")
    conn.executescript(
        UNDO_10 + UNDO_9 + UNDO_8 + UNDO_7 + f"ALTER TABLE reservations RENAME TO r4; {v1_table};"
        "INSERT INTO reservations SELECT * FROM r4; DROP TABLE r4;"
        "CREATE INDEX reservations_done_time ON reservations (authorized_at) WHERE state != 'held';"
        "DELETE FROM schema_migrations WHERE version > 3;" + UNDO_5_AND_6
    )
    conn.close()
    with Governor(url) as gov:
        assert gov.store.schema_version() == len(MIGRATIONS)  # type: ignore[attr-defined]
        assert gov.record("p", SUBJECT, "openai", "m", {"input_tokens": 7}).replayed
        assert gov.commit("r", {"input_tokens": 4}).event.usage.input_tokens == 4
        other = SUBJECT | {"tenant": "other"}
        assert gov.authorize("r", other, "openai", "m", {"input_tokens": 5}).allowed
        assert gov.status(SUBJECT)[0].used == 11


def test_sqlite_upgrade_scopes_budget_ids_by_tenant(tmp_path: Path) -> None:
    """Migration 7 moves a tenant budget's counters, archived baseline and held
    charges to its tenant#id key, and leaves deployment-wide budgets as they were."""
    url = f"sqlite:///{tmp_path}/v6.db"
    wide = {"id": "all", "meter": "tokens", "window": "month", "limit": 1000}
    with Governor(url) as gov:
        gov.create_budget(SPEC)
        gov.create_budget(wide)
        gov.record("p", SUBJECT, "openai", "m", {"input_tokens": 7})
        gov.authorize("r", SUBJECT, "openai", "m", {"input_tokens": 5})
        before = gov.store.counters()
    assert {k[0] for k in before} == {"acme#d", "all"}
    conn = sqlite3.connect(tmp_path / "v6.db")
    conn.executescript(
        UNDO_10 + UNDO_9 + UNDO_8 + UNDO_7 + "DELETE FROM schema_migrations WHERE version > 6;"
    )
    [(_, member, bucket)] = [k for k in before if k[0] == "acme#d"]
    conn.execute("INSERT INTO counter_baseline VALUES ('d', ?, ?, 3)", (member, bucket))
    conn.commit()
    assert {r[0] for r in conn.execute("SELECT budget_id FROM counters")} == {"d", "all"}
    conn.close()
    with Governor(url) as gov:
        assert gov.store.schema_version() == len(MIGRATIONS)  # type: ignore[attr-defined]
        assert gov.store.counters() == before
        assert gov.commit("r", {"input_tokens": 4}).event.usage.input_tokens == 4
        assert [(v.budget_id, v.used, v.reserved) for v in gov.status(SUBJECT)] == [
            ("all", 11, 0), ("d", 11, 0),
        ]  # fmt: skip
        gov.create_budget({**SPEC, "tenant": "globex"})
        assert gov.get_budget("d", tenant="acme").tenant == "acme"
        gov.rebuild()
        assert [(v.budget_id, v.used) for v in gov.status(SUBJECT)] == [("all", 11), ("d", 14)]


def test_naive_clock_is_refused() -> None:
    from datetime import datetime

    from allotment import ValidationError

    gov = Governor("memory://", clock=lambda: datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValidationError, match="clock"):
        gov.authorize("r", SUBJECT, "openai", "m")


def test_clock_zone_must_give_an_offset() -> None:
    from datetime import datetime, tzinfo
    from zoneinfo import ZoneInfo

    from allotment import ValidationError

    class NoOffset(tzinfo):
        def utcoffset(self, dt: datetime | None) -> None:
            return None

    gov = Governor("memory://", clock=lambda: datetime(2026, 1, 1, tzinfo=NoOffset()))
    with pytest.raises(ValidationError, match="clock"):
        gov.authorize("r", SUBJECT, "openai", "m")
    berlin = datetime(2026, 1, 1, 12, tzinfo=ZoneInfo("Europe/Berlin"))
    assert Governor("memory://", clock=lambda: berlin).now() == berlin


def test_config_file_with_rates_and_a_eur_budget(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "rates:\n"
        "  - {source: USD, target: EUR, rate: '0.92', effective_from: '2026-01-01T00:00:00Z'}\n"
        "budgets:\n"
        "  - {id: e, tenant: acme, meter: cost, window: day, limit: '1.00', currency: EUR}\n"
    )
    gov = Governor("memory://")
    assert [b.id for b in gov.load_budgets(config)] == ["e"]
    assert [str(r.rate) for r in gov.rates()] == ["0.92"]


def test_authorize_from_the_request_itself() -> None:
    gov = Governor("memory://")
    gov.create_budget(SPEC | {"limit": 10_000})
    request = {
        "model": "gpt-4o-mini",
        "max_tokens": 500,
        "messages": [{"role": "user", "content": "Summarise the attached minutes, please."}],
    }
    decision = gov.authorize("r1", SUBJECT, "openai", "gpt-4o-mini", request=request)
    reserved = decision.budgets[0].reserved
    assert 500 + 10 < reserved < 500 + 30  # 500 output + the counted prompt and overhead
    assert not gov.authorize("r2", SUBJECT, "openai", "gpt-4o-mini",
                             request=request | {"max_tokens": 20_000}).allowed  # fmt: skip
