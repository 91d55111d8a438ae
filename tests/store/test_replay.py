"""Replay: proposed budgets over the ledger, counterfactually, against the current ones.

A call the replayed budgets refuse counts toward nothing later, so a smaller
call after it may fit; each day and tenant says what each policy would have
refused and the spend that is.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from allotment.cli import app
from allotment.errors import ValidationError
from allotment.governor import Governor
from allotment.replay import replay

DAY = datetime(2026, 11, 23, 9, tzinfo=UTC)
CURRENT = {"id": "team-day", "tenant": "acme", "meter": "tokens", "window": "day", "limit": 1000}
PROPOSED = [{"id": "user-day", "tenant": "acme", "meter": "tokens", "window": "day",
             "per": "user", "limit": 500}]  # fmt: skip


def ledger(tmp_path: Path) -> Governor:
    """Five calls of u1 on the 23rd (300 tokens each, then 100), one on the 24th, one of
    another tenant; each costs a cent per 100 tokens."""
    gov = Governor(f"sqlite:///{tmp_path / 'a.db'}", pricer=None)
    gov.create_budget({**CURRENT, "mode": "warn"})  # nothing refused while they ran
    calls = [(DAY, 300), (DAY, 300), (DAY, 300), (DAY, 300), (DAY, 100)]
    calls.append((DAY + timedelta(days=1), 300))
    for n, (at, tokens) in enumerate(calls):
        usage = {"input_tokens": tokens, "cost_micros": tokens * 100}
        gov.record(f"c{n}", {"tenant": "acme", "user": "u1"}, "openai", "gpt-4o", usage,
                   occurred_at=at + timedelta(minutes=n))  # fmt: skip
    gov.record("other", {"tenant": "globex"}, "openai", "gpt-4o",
               {"input_tokens": 5000, "cost_micros": 500_000}, occurred_at=DAY)  # fmt: skip
    gov.update_budget("team-day", {"mode": "enforce"})
    return gov


def test_refused_calls_count_toward_nothing_later(tmp_path: Path) -> None:
    gov = ledger(tmp_path)
    report = replay(gov, PROPOSED, since=DAY - timedelta(hours=9), until=DAY + timedelta(days=2))
    rows = {(r.day, r.tenant): r for r in report.rows}
    first = rows[(date(2026, 11, 23), "acme")]
    assert (first.calls, first.spend_micros) == (5, 130_000)
    # current: 300, 300, 300 fit the team's 1,000; the fourth is refused; the 100 fits after it
    assert (first.current_refused, first.current_refused_micros) == (1, 30_000)
    # proposed: u1's 500 takes the first call; three are refused; the 100 fits after them
    assert (first.proposed_refused, first.proposed_refused_micros) == (3, 90_000)
    second = rows[(date(2026, 11, 24), "acme")]
    assert (second.calls, second.current_refused, second.proposed_refused) == (1, 0, 0)
    other = rows[(date(2026, 11, 23), "globex")]
    assert (other.calls, other.current_refused, other.proposed_refused) == (1, 0, 0)
    assert report.refused_by == {"user-day": 3}
    assert report.currency == "USD"
    gov.close()


def test_days_are_the_viewers_and_the_span_is_half_open(tmp_path: Path) -> None:
    gov = ledger(tmp_path)
    tokyo = ZoneInfo("Asia/Tokyo")  # 09:00 UTC is 18:00 there: the same day
    report = replay(gov, PROPOSED, since=DAY, until=DAY + timedelta(minutes=3), tz=tokyo)
    assert [(r.day, r.tenant, r.calls) for r in report.rows] == [
        (date(2026, 11, 23), "acme", 3),  # c0, c1, c2: c3 is at the end, excluded
        (date(2026, 11, 23), "globex", 1),
    ]
    only = replay(gov, PROPOSED, since=DAY, until=DAY + timedelta(days=2), tenant="globex")
    assert [r.tenant for r in only.rows] == ["globex"]
    gov.close()


def test_credit_pools_are_left_out_and_named(tmp_path: Path) -> None:
    gov = ledger(tmp_path)
    pool = {"id": "pool", "tenant": "acme", "meter": "tokens", "window": "month", "limit": 100,
            "credits": True}  # fmt: skip
    gov.create_budget(pool)
    report = replay(gov, [*PROPOSED, {**pool, "id": "proposed-pool"}], since=DAY,
                    until=DAY + timedelta(days=1))  # fmt: skip
    assert report.not_replayed == ["pool", "proposed-pool"]
    [acme] = [r for r in report.rows if r.tenant == "acme"]
    assert (acme.current_refused, acme.proposed_refused) == (1, 3)  # as without the pools
    gov.close()


def test_bad_proposals_name_the_field(tmp_path: Path) -> None:
    gov = ledger(tmp_path)
    with pytest.raises(ValidationError, match=r"budgets\[0\]\.limit"):
        replay(gov, [{**PROPOSED[0], "limit": -1}], since=DAY, until=DAY + timedelta(days=1))
    with pytest.raises(ValidationError, match="until"):
        replay(gov, PROPOSED, since=DAY, until=DAY)
    gov.close()


def test_the_cli_prints_each_day_and_tenant(tmp_path: Path) -> None:
    ledger(tmp_path).close()
    proposed = tmp_path / "proposed.yaml"
    proposed.write_text(
        "budgets:\n  - {id: user-day, tenant: acme, meter: tokens, window: day, per: user,"
        " limit: 500}\n"
    )
    db = f"sqlite:///{tmp_path / 'a.db'}"
    args = ["replay", "--budgets", str(proposed), "--since", "2026-11-23", "--until",
            "2026-11-25", "--db", db]  # fmt: skip
    shown = CliRunner().invoke(app, [*args, "--json"])
    assert shown.exit_code == 0, shown.output
    assert '"proposed_refused": 3' in shown.stdout
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "2026-11-23" in table.stdout and "0.09 USD" in table.stdout
    assert "proposed: 3 calls refused, 0.09 USD avoided (by user-day 3)" in table.stdout
    bad = CliRunner().invoke(app, [*args[:-2], "--budgets", str(tmp_path / "none.yaml"),
                                   "--db", db])  # fmt: skip
    assert bad.exit_code == 2 and "none.yaml" in bad.output
    zone = CliRunner().invoke(app, [*args, "--tz", "Mars/Olympus"])
    assert zone.exit_code == 2 and "--tz" in zone.output
    remote = CliRunner().invoke(
        app, [*args[:-2], "--url", "http://127.0.0.1:9", "--api-key", "ak_x"]
    )
    assert remote.exit_code == 2 and "--db" in remote.output
