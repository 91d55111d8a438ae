"""``allotment demo``: a simulated day, up to now, kept between runs (real SQLite files)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
