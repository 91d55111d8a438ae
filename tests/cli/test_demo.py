"""``allotment demo``: a simulated day, up to now, kept between runs (real SQLite files)."""

from __future__ import annotations

import importlib
import io
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from allotment.cli import app
from allotment.demo import demo_state, run_demo, simulated_span
from allotment.errors import ConfigurationError
from allotment.governor import Governor
from allotment.store.base import EventQuery

runner = CliRunner()
EVENING = "2026-11-23T20:00:00+00:00"


def quiet() -> Console:
    return Console(file=io.StringIO(), width=160)


def all_events(url: str) -> list[datetime]:
    with Governor(url, pricer=None) as gov:
        times, after = [], 0
        while page := gov.events(EventQuery(after_id=after, limit=1000)):
            times += [e.occurred_at for e in page]
            after = page[-1].id or 0
        return times


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}"
    result = runner.invoke(app, ["demo", "--db", url, "--now", EVENING])
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, ["demo", "--db", url, "--now", EVENING, "--reset"])
    assert again.stdout == result.stdout  # recreated: same seed, same time, same report
    return result.stdout


def test_demo_reports_calls_and_refusals(demo_output: str) -> None:
    summary = re.search(r"on 2026-11-23 08:00-20:00 UTC: (\d+) allowed, (\d+) refused .*, "
                        r"(\d+) errors", demo_output)  # fmt: skip
    assert summary is not None, demo_output
    allowed, refused, errors = map(int, summary.groups())
    assert allowed > 0 and refused > 0 and errors > 0


def test_demo_prints_tables_for_the_three_systems(demo_output: str) -> None:
    for text in (
        "System 1", "port-a-daily", "port-b-daily", "port-a usage by feature", "summarize",
        "System 2", "globex-interns-daily", "globex spend per user", "EUR",
        "System 5", "orchestrator-per-agent", "orchestrator usage by agent", "coder",
    ):  # fmt: skip
        assert text in demo_output, text


def test_demo_shows_a_credit_pool_topped_up_to_its_monthly_cap(demo_output: str) -> None:
    [row] = [line for line in demo_output.splitlines() if line.startswith(" globex-erin-credits")]
    assert "erin" in row and "0.05 EUR" in row
    assert ("globex-erin-credits (erin's prepaid credit): 0.030272 EUR left, 2 auto top-ups "
            "paid by the test gateway; auto top-up status: auto_topup_monthly_limit_reached"
            ) in demo_output  # fmt: skip


def test_the_demo_pool_reads_through_the_cli(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pool.db'}"
    run_demo(url, 7, quiet(), datetime.fromisoformat(EVENING))
    shown = runner.invoke(app, ["credits", "show", "globex-erin-credits", "--tenant", "globex",
                                "--member", "erin", "--db", url])  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "welcome" in shown.stdout and "top_up" in shown.stdout
    assert "auto top-up: below 0.04 EUR, buy 0.05 EUR (at most 0.10 EUR a month)" in shown.stdout


def test_a_demo_kept_from_before_its_credit_pool_still_reports(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    run_demo(url, 7, quiet(), datetime.fromisoformat(EVENING))
    with Governor(url) as gov:  # as a demo made before the pool was added
        gov.delete_budget("globex-erin-credits", tenant="globex")
    console = quiet()
    assert not run_demo(url, 7, console, datetime.fromisoformat(EVENING))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "System 5" in shown and "prepaid credit" not in shown


@pytest.mark.parametrize(("given", "used"), [("", "test"), ("test:failed", "test:failed")])
def test_the_served_demo_pays_top_ups_with_the_test_gateway_unless_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, used: str
) -> None:
    for name in ("ALLOTMENT_DB", "ALLOTMENT_TOPUP_GATEWAY", "ALLOTMENT_ADMIN_KEY"):
        monkeypatch.setenv(name, "")  # restored afterwards: serve sets some of them
    monkeypatch.setenv("ALLOTMENT_TOPUP_GATEWAY", given)
    seen: dict[str, Any] = {}
    uvicorn = SimpleNamespace(run=lambda *_, **__: seen.update(os.environ))
    # the module (``allotment.cli.serve`` is also the name of its command)
    monkeypatch.setattr(importlib.import_module("allotment.cli.serve"), "_server", lambda: uvicorn)
    result = runner.invoke(app, ["serve", "--demo", "--db", f"sqlite:///{tmp_path / 's.db'}"])
    assert result.exit_code == 0, result.output
    assert seen["ALLOTMENT_TOPUP_GATEWAY"] == used
    told = "auto top-ups are paid by the test gateway" in result.stdout
    assert told is (given == "")


def test_demo_tables_are_short(demo_output: str) -> None:
    assert len(demo_output.splitlines()) <= 55


def test_demo_agent_hits_its_limit_and_alice_override_applies(demo_output: str) -> None:
    coder = [line for line in demo_output.splitlines() if "per-agent" in line and "coder" in line]
    assert coder and ("at_limit" in coder[0] or "exceeded" in coder[0])
    alice = [line.split() for line in demo_output.splitlines() if " alice " in line]
    assert [cells[0] for cells in alice if "daily" in cells[0]] == ["globex-alice-daily"]


def test_demo_with_another_seed_and_memory_store() -> None:
    result = runner.invoke(app, ["demo", "--db", "memory://", "--seed", "11"])
    assert result.exit_code == 0, result.output
    assert "refused" in result.stdout


# --- item: the simulated day ends now --------------------------------------------------


@pytest.mark.parametrize(
    ("now", "start"),
    [
        (datetime(2026, 11, 23, 15, 30, tzinfo=UTC), datetime(2026, 11, 23, 3, 30, tzinfo=UTC)),
        (datetime(2026, 11, 23, 3, 0, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC)),
        (datetime(2026, 11, 23, 0, 0, 1, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC)),
    ],
)
def test_the_demo_writes_no_event_after_now(tmp_path: Path, now: datetime, start: datetime) -> None:
    url = f"sqlite:///{tmp_path / 'now.db'}"
    assert simulated_span(now) == (start, now)
    run_demo(url, 7, quiet(), now)
    times = all_events(url)
    assert len(times) > 400
    assert all(start <= t <= now for t in times), (min(times), max(times))
    assert max(times) > now - (now - start) / 10  # spread over the span, up to its end


def test_the_cli_demo_simulates_up_to_the_current_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'today.db'}"
    before = datetime.now(UTC)
    assert runner.invoke(app, ["demo", "--db", url]).exit_code == 0
    times = all_events(url)
    assert max(times) <= datetime.now(UTC)
    midnight = before.replace(hour=0, minute=0, second=0, microsecond=0)
    assert min(times) >= max(before - timedelta(hours=12), midnight)


# --- item: the demo database is kept ------------------------------------------------------


def test_a_second_run_keeps_the_demo_and_reset_starts_afresh(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keep.db'}"
    assert demo_state(url) == "fresh"
    assert run_demo(url, 7, quiet(), datetime(2026, 11, 23, 12, tzinfo=UTC))
    first = all_events(url)
    with Governor(url) as gov:  # the operator adds a budget of their own to play with
        gov.set_budget({"id": "mine", "tenant": "port-a", "meter": "requests", "window": "day"})
    console = quiet()
    assert not run_demo(url, 7, console, datetime(2026, 11, 23, 18, tzinfo=UTC))
    assert "kept the demo already in" in console.file.getvalue()  # type: ignore[attr-defined]
    assert all_events(url) == first and demo_state(url) == "demo"
    with pytest.raises(ConfigurationError, match="budgets the demo did not make: mine"):
        run_demo(url, 7, quiet(), reset=True)
    with Governor(url) as gov:
        gov.delete_budget("mine")
    assert run_demo(url, 7, quiet(), datetime(2026, 11, 23, 18, tzinfo=UTC), reset=True)
    assert max(all_events(url)) > max(first)


def test_the_demo_refuses_a_real_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'real.db'}"
    with Governor(url) as gov:
        gov.set_budget({"id": "production", "meter": "tokens", "window": "day"})
    for args in (["demo", "--db", url], ["demo", "--db", url, "--reset"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "not a demo database" in result.stderr
    with Governor(url) as gov:
        assert [b.id for b in gov.list_budgets()] == ["production"]


def test_the_demo_goes_into_a_database_with_keys_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    with Governor(url) as gov:
        _, secret = gov.create_key("admin")
    assert demo_state(url) == "fresh"
    assert run_demo(url, 7, quiet(), datetime(2026, 11, 23, 12, tzinfo=UTC))
    with Governor(url) as gov:
        assert gov.authenticate(secret) is not None  # the key survived


def test_demo_console_script_runs(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("allotment")
    url = f"sqlite:///{tmp_path / 'd.db'}"
    done = subprocess.run(
        [str(script), "demo", "--db", url], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "System 5" in done.stdout and (tmp_path / "d.db").exists()
