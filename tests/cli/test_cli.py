"""The ``allotment`` command line, end to end on real SQLite files (no mocks)."""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import allotment
from allotment.cli import app
from allotment.config import load_budget_specs
from allotment.store.migrations.sqlite import MIGRATIONS

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def run(db: str, *args: str) -> Result:
    """Invoke the CLI in-process against ``db``."""
    return runner.invoke(app, [*args, "--db", db])


def ok(db: str, *args: str) -> str:
    result = run(db, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def as_json(db: str, *args: str) -> Any:
    return json.loads(ok(db, *args, "--json"))


def set_budget(db: str, *args: str) -> str:
    return ok(db, "budgets", "set", *args)


def record(db: str, *args: str) -> str:
    base = ("record", "--tenant", "port-a", "--provider", "openai", "--model", "gpt-4o-mini")
    return ok(db, *base, *args)


# --- budgets -----------------------------------------------------------------------


def test_budgets_set_list_delete_round_trip(db: str) -> None:
    out = set_budget(
        db, "--id", "port-a-daily", "--tenant", "port-a", "--meter", "tokens",
        "--window", "day", "--limit", "200000", "--soft", "50", "--soft", "80",
    )  # fmt: skip
    assert "port-a-daily" in out and "saved 1 budget" in out

    table = ok(db, "budgets", "list")
    assert "port-a-daily" in table and "day (UTC)" in table and "200,000" in table

    [spec] = as_json(db, "budgets", "list")
    assert spec["id"] == "port-a-daily" and spec["tenant"] == "port-a"
    assert spec["meter"] == "tokens" and spec["limit"] == "200000"
    assert [Decimal(p) for p in spec["soft"]] == [50, 80]

    assert "deleted budget port-a-daily" in ok(db, "budgets", "delete", "port-a-daily")
    assert as_json(db, "budgets", "list") == []


def test_budgets_set_cost_policy_with_selectors(db: str) -> None:
    result = run(db, "budgets", "set", "--id", "x", "--meter", "cost", "--window", "day",
                 "--currency", "EUR")  # fmt: skip
    assert result.exit_code == 2 and "no exchange rate" in result.stderr
    rate = ok(db, "rates", "set", "--source", "USD", "--target", "EUR", "--rate", "0.92",
              "--from", "2026-01-01")  # fmt: skip
    assert "1 USD = 0.92 EUR from 2026-01-01T00:00:00+00:00" in rate
    assert as_json(db, "rates", "list")[0]["rate"] == "0.92"
    set_budget(
        db, "--id", "interns", "--tenant", "globex", "--meter", "cost", "--window",
        "day@Europe/Berlin", "--limit", "0.50", "--per", "user", "--match", "group=interns",
        "--exclude", "tags.byok=true", "--overrides", "--currency", "EUR", "--name", "interns",
    )  # fmt: skip
    [spec] = as_json(db, "budgets", "list", "--tenant", "globex")
    assert Decimal(spec["limit"]) == Decimal("0.50")
    assert spec["match"] == {"group": ["interns"]} and spec["exclude"] == {"tags.byok": ["true"]}
    assert spec["per"] == "user" and spec["overrides"] is True and spec["currency"] == "EUR"
    table = ok(db, "budgets", "list")
    assert "0.50 EUR" in table and "day (Europe/Berlin)" in table


def test_budgets_set_replaces_and_disables(db: str) -> None:
    set_budget(db, "--id", "b", "--meter", "tokens", "--window", "week", "--limit", "10")
    set_budget(db, "--id", "b", "--meter", "requests", "--window", "month", "--disabled")
    [spec] = as_json(db, "budgets", "list")
    assert spec["meter"] == "requests" and spec["limit"] is None and spec["enabled"] is False


def test_budgets_list_filters_by_tenant(db: str) -> None:
    for tenant in ("port-a", "port-b"):
        set_budget(db, "--id", tenant, "--tenant", tenant, "--meter", "tokens", "--window", "day")
    assert [s["id"] for s in as_json(db, "budgets", "list", "--tenant", "port-b")] == ["port-b"]


def test_budgets_set_from_yaml_file(db: str, tmp_path: Path) -> None:
    file = tmp_path / "budgets.yaml"
    file.write_text(
        "budgets:\n"
        "  - {id: crm-daily, tenant: port-a, meter: tokens, window: day, limit: 200000}\n"
        "  - id: crm-weekly\n"
        "    tenant: port-a\n"
        "    meter: tokens\n"
        "    window: week\n"
        "    limit: 1000000\n"
        "    soft: [80, 90]\n",
        encoding="utf-8",
    )
    out = set_budget(db, "--file", str(file))
    assert "saved 2 budget(s)" in out
    specs = {s["id"]: s for s in as_json(db, "budgets", "list")}
    assert set(specs) == {"crm-daily", "crm-weekly"}
    assert specs["crm-weekly"]["limit"] == "1000000"


def test_budgets_set_from_toml_file(db: str, tmp_path: Path) -> None:
    file = tmp_path / "budgets.toml"
    file.write_text(
        '[[budgets]]\nid = "agents"\ntenant = "orchestrator"\nmeter = "tokens"\n'
        'window = "day"\nper = "agent"\nlimit = 120000\n',
        encoding="utf-8",
    )
    set_budget(db, "--file", str(file))
    [spec] = as_json(db, "budgets", "list")
    assert spec["per"] == "agent"


def test_budgets_set_file_and_flags_is_a_usage_error(db: str, tmp_path: Path) -> None:
    result = run(db, "budgets", "set", "--file", str(tmp_path / "x.yaml"), "--id", "b")
    assert result.exit_code == 2
    assert "--file" in result.output and "Traceback" not in result.output


# --- status, record, usage ---------------------------------------------------------


def test_status_shows_the_state_of_each_budget(db: str) -> None:
    set_budget(
        db, "--id", "cap", "--tenant", "port-a", "--meter", "tokens", "--window", "lifetime",
        "--limit", "1000",
    )  # fmt: skip
    assert "within_budget" in ok(db, "status", "--tenant", "port-a")
    record(db, "--input", "900", "--output", "60")
    out = ok(db, "status", "--tenant", "port-a", "--user", "u1")
    assert "at_limit" in out and "960" in out and "96.00%" in out
    record(db, "--input", "100")
    assert "exceeded" in ok(db, "status", "--tenant", "port-a")


def test_status_json_and_per_member_budgets(db: str) -> None:
    set_budget(
        db, "--id", "per-agent", "--tenant", "orch", "--meter", "tokens", "--window", "lifetime",
        "--per", "agent", "--limit", "100",
    )  # fmt: skip
    ok(db, "record", "--tenant", "orch", "--agent", "coder", "--provider", "p", "--model", "m",
       "--input", "85")  # fmt: skip
    [view] = as_json(db, "status", "--tenant", "orch", "--agent", "coder")
    assert view["budget_id"] == "per-agent" and view["member"] == "coder"
    assert view["used"] == 85 and view["state"] == "approaching_limit"
    assert as_json(db, "status", "--tenant", "orch", "--agent", "tester")[0]["used"] == 0
    assert as_json(db, "status", "--tenant", "orch") == []  # no agent: per-agent does not apply


def test_status_of_cost_budget_shows_money(db: str) -> None:
    set_budget(
        db, "--id", "spend", "--tenant", "globex", "--meter", "cost", "--window", "lifetime",
        "--limit", "2.00", "--per", "user", "--exclude", "tags.byok=true",
    )  # fmt: skip
    base = ("record", "--tenant", "globex", "--user", "alice", "--provider", "openai")
    ok(db, *base, "--model", "gpt-4o", "--cost", "0.50", "--currency", "EUR")
    ok(db, *base, "--model", "gpt-4o", "--cost", "9.00", "--tag", "byok=true")
    out = ok(db, "status", "--tenant", "globex", "--user", "alice", "--currency", "EUR")
    assert "0.50 EUR" in out and "2.00 EUR" in out and "25.00%" in out


def test_status_without_budgets_says_so(db: str) -> None:
    assert "no budget applies" in ok(db, "status", "--tenant", "nobody")


def test_record_prints_the_event_id_and_is_idempotent(db: str) -> None:
    first = record(db, "--request-id", "r-1", "--input", "10")
    assert re.search(r"recorded event 1\b", first)
    again = record(db, "--request-id", "r-1", "--input", "10")
    assert "already recorded as event 1" in again
    assert len(as_json(db, "usage", "--tenant", "port-a")) == 1


def test_record_json_is_the_event(db: str) -> None:
    event = json.loads(record(db, "--user", "u1", "--input", "5", "--cost", "0.01", "--json"))
    assert event["subject"] == {"tenant": "port-a", "user": "u1"}
    assert event["usage"]["cost_micros"] == 10_000 and len(event["request_id"]) == 32


def test_usage_by_feature_after_records(db: str) -> None:
    record(db, "--feature", "summarize", "--input", "1000", "--output", "200", "--cost", "0.0123")
    record(db, "--feature", "summarize", "--input", "500", "--status", "error")
    record(db, "--feature", "classify", "--input", "300", "--output", "5")
    table = ok(db, "usage", "--tenant", "port-a", "--by", "feature")
    # 0.0123 given + the error call's 500 gpt-4o-mini input tokens at $0.15/M, priced by the catalog
    assert "summarize" in table and "classify" in table and "0.012375 USD" in table
    assert "1,700" in table  # summarize tokens: 1000 + 200 + 500

    rows = {r["group"]["feature"]: r for r in as_json(db, "usage", "--tenant", "port-a",
                                                      "--by", "feature")}  # fmt: skip
    assert rows["summarize"]["calls"] == 2 and rows["summarize"]["errors"] == 1
    assert rows["summarize"]["cost_micros"] == 12_375 and rows["summarize"]["currency"] == "USD"
    assert Decimal(rows["summarize"]["display"]["cost"]) == Decimal("0.012375")
    assert rows["classify"]["output_tokens"] == 5


def test_usage_by_two_dimensions_and_time_range(db: str) -> None:
    record(db, "--feature", "summarize", "--input", "10")
    rows = as_json(db, "usage", "--tenant", "port-a", "--by", "feature", "--by", "model")
    assert rows[0]["group"] == {"feature": "summarize", "model": "gpt-4o-mini"}
    assert as_json(db, "usage", "--tenant", "port-a", "--since", "2000-01-01")[0]["calls"] == 1
    assert as_json(db, "usage", "--tenant", "port-a", "--since", "2999-01-01T00:00:00Z") == []
    assert as_json(db, "usage", "--tenant", "port-a", "--until", "2000-01-01") == []


def test_ledger_rebuild_reports_what_it_did(db: str) -> None:
    set_budget(db, "--id", "b", "--tenant", "port-a", "--meter", "tokens", "--window", "month")
    record(db, "--input", "10")
    record(db, "--input", "20")
    assert re.search(r"read 2 events, wrote 1 counters", ok(db, "ledger", "rebuild"))
    [view] = as_json(db, "status", "--tenant", "port-a")
    assert view["used"] == 30


def test_ledger_archive_and_db_upgrade(db: str, tmp_path: Path) -> None:
    set_budget(db, "--id", "b", "--tenant", "port-a", "--meter", "tokens", "--window", "month")
    record(db, "--input", "10")
    assert f"schema at version {len(MIGRATIONS)}" in ok(db, "db", "upgrade")
    out = ok(
        db, "ledger", "archive", "--before", "2000-01-01", "--to", str(tmp_path / "a.jsonl.gz")
    )
    assert "archived 0 events" in out
    future = run(db, "ledger", "archive", "--before", "2999-01-01", "--to", str(tmp_path / "b"))
    assert future.exit_code != 0 and "before" in future.output


# --- errors ------------------------------------------------------------------------


SET_TOKENS_DAY = ["budgets", "set", "--id", "b", "--meter", "tokens", "--window", "day"]
RECORD_T = ["record", "--tenant", "t", "--provider", "p", "--model", "m"]


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["budgets", "set", "--id", "b", "--meter", "bogus", "--window", "day"], "meter"),
        (["budgets", "set", "--id", "b", "--meter", "tokens", "--window", "fortnight"], "window"),
        ([*SET_TOKENS_DAY, "--limit", "-5"], "limit"),
        ([*SET_TOKENS_DAY, "--soft", "abc"], "soft"),
        ([*SET_TOKENS_DAY, "--mode", "loud"], "mode"),
        ([*SET_TOKENS_DAY, "--per", "colour"], "per"),
        (["budgets", "set", "--meter", "tokens", "--window", "day"], "id"),
        (["budgets", "delete", "no-such-budget"], "no-such-budget"),
        ([*RECORD_T, "--status", "bad"], "status"),
        ([*RECORD_T, "--cost", "abc"], "cost"),
        (["usage", "--tenant", "t", "--by", "colour"], "by"),
        (["status", "--tenant", ""], "tenant"),
    ],
)
def test_allotment_errors_exit_2_with_one_red_line(db: str, args: list[str], mentions: str) -> None:
    result = run(db, *args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert mentions in lines[0]
    assert "Traceback" not in result.output and result.stdout == ""


def test_bad_store_url_and_bad_files_are_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["budgets", "list", "--db", "foo://bar"])
    assert result.exit_code == 2 and "error: unknown store URL scheme" in result.stderr
    missing = runner.invoke(app, ["budgets", "set", "--file", str(tmp_path / "none.yaml"),
                                  "--db", f"sqlite:///{tmp_path / 'x.db'}"])  # fmt: skip
    assert missing.exit_code == 2 and "error: cannot read" in missing.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("budgets: [\n  {id: a\n", encoding="utf-8")
    bad = runner.invoke(app, ["budgets", "set", "--file", str(broken),
                              "--db", f"sqlite:///{tmp_path / 'x.db'}"])  # fmt: skip
    assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_default_db_comes_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    env = {"ALLOTMENT_DB": url}
    args = ["budgets", "set", "--id", "e", "--meter", "tokens", "--window", "day"]
    assert runner.invoke(app, args, env=env).exit_code == 0
    assert (tmp_path / "env.db").exists()
    assert json.loads(runner.invoke(app, ["budgets", "list", "--json"], env=env).stdout)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        ([*SET_TOKENS_DAY, "--match", "x"], "error: --match: expected name=value, got 'x'"),
        (["usage", "--tenant", "t", "--since", "yesterday"], "error: --since: not an ISO 8601"),
        ([*RECORD_T, "--input", "-1"], "error: --input: "),
        (["status"], "error: --tenant: is required"),
        (["budgets", "list", "--limit", "3"], "error: --limit: no such option"),
        (["budgets", "set", "--id"], "error: --id: requires an argument"),
        (["budgets", "delete"], "error: ID: is required"),
        (["budgets", "frobnicate"], "error: No such command 'frobnicate'"),
    ],
)
def test_bad_option_usage_is_one_line_too(args: list[str], line: str) -> None:
    result = runner.invoke(app, args)  # refused before any store is opened
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(line) and len(result.stderr.strip().splitlines()) == 1
    assert "Usage:" not in result.output and "Traceback" not in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"allotment {allotment.__version__}\n"


@pytest.mark.parametrize("group", [[], ["budgets"], ["ledger"], ["rates"], ["prices"], ["keys"],
                                   ["db"]])  # fmt: skip
def test_a_group_without_a_command_prints_its_help_and_exits_2(group: list[str]) -> None:
    result = runner.invoke(app, group)
    assert result.exit_code == 2
    assert "Usage:" in result.stdout and "Commands" in result.stdout and result.stderr == ""


@pytest.mark.parametrize(
    "command", [["--help"], ["budgets", "set", "--help"], ["record", "--help"], ["keys", "list",
                "--help"], ["status", "--help"], ["serve", "--help"]],
)  # fmt: skip
def test_flags_do_not_look_like_they_take_a_value(command: list[str]) -> None:
    result = runner.invoke(app, command, env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "bool" not in result.stdout.lower()
    flags = [
        line for line in result.stdout.splitlines() if re.search(r"--(json|help|demo)\b", line)
    ]
    assert flags and all("<" not in line for line in flags)


def test_group_and_groups_both_name_the_subject_groups(db: str) -> None:
    set_budget(db, "--id", "interns", "--tenant", "t", "--meter", "tokens", "--window",
               "lifetime", "--limit", "100", "--match", "group=interns")  # fmt: skip
    ok(db, *RECORD_T, "--group", "interns", "--input", "10")
    ok(db, *RECORD_T, "--groups", "interns", "--groups", "other", "--input", "5")
    for option in ("--group", "--groups"):
        [view] = as_json(db, "status", "--tenant", "t", option, "interns")
        assert view["used"] == 15
    assert as_json(db, "status", "--tenant", "t", "--group", "other") == []


def test_budgets_get_shows_one_budget(db: str) -> None:
    set_budget(db, "--id", "b", "--tenant", "t", "--meter", "tokens", "--window", "day",
               "--limit", "10")  # fmt: skip
    assert as_json(db, "budgets", "get", "b")["limit"] == "10"
    assert "day (UTC)" in ok(db, "budgets", "get", "b")
    missing = run(db, "budgets", "get", "nope")
    assert missing.exit_code == 2 and "nope" in missing.stderr


def test_a_config_without_budgets_is_fine(db: str, tmp_path: Path) -> None:
    pricing_only = tmp_path / "pricing.yaml"
    pricing_only.write_text("pricing:\n  unknown_model: deny\n", encoding="utf-8")
    assert "saved 0 budget(s)" in set_budget(db, "--file", str(pricing_only))
    assert load_budget_specs(pricing_only) == []
    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    assert load_budget_specs(empty) == []
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("budgets: {id: x}\n", encoding="utf-8")
    assert run(db, "budgets", "set", "--file", str(wrong)).exit_code == 2


# --- where a command works ----------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["ledger", "rebuild"],
        ["ledger", "archive", "--before", "2000-01-01", "--to", "x.jsonl.gz"],
        ["ledger", "reprice", "--since", "2000-01-01", "--until", "2001-01-01"],
        ["db", "upgrade"],
    ],
)
def test_commands_without_an_endpoint_need_the_database(args: list[str]) -> None:
    for given in (["--url", "http://127.0.0.1:9", "--api-key", "k"], []):
        env = {} if given else {"ALLOTMENT_URL": "http://127.0.0.1:9", "ALLOTMENT_API_KEY": "k"}
        result = runner.invoke(app, [*args, *given], env=env)
        assert result.exit_code == 2
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("error: --db: ") and "no HTTP endpoint" in line


def test_remote_mode_needs_a_key_and_excludes_db(db: str) -> None:
    no_key = runner.invoke(app, ["status", "--tenant", "t", "--url", "http://127.0.0.1:9"],
                           env={"ALLOTMENT_API_KEY": ""})  # fmt: skip
    assert no_key.exit_code == 2 and no_key.stderr.startswith("error: --api-key: ")
    both = run(db, "status", "--tenant", "t", "--url", "http://127.0.0.1:9")
    assert both.exit_code == 2 and both.stderr.startswith("error: --db: give --db or --url")
    stray = runner.invoke(app, ["status", "--tenant", "t", "--api-key", "k"])
    assert stray.exit_code == 2 and stray.stderr.startswith("error: --api-key: only with --url")


def test_a_db_flag_beats_allotment_url(db: str) -> None:
    env = {"ALLOTMENT_URL": "http://127.0.0.1:9", "ALLOTMENT_API_KEY": "k"}
    assert runner.invoke(app, ["status", "--tenant", "t", "--db", db], env=env).exit_code == 0


def test_an_unreachable_service_is_one_line_and_exit_1() -> None:
    result = runner.invoke(app, ["budgets", "list", "--url", "http://127.0.0.1:9",
                                 "--api-key", "k"])  # fmt: skip
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach the service at http://127.0.0.1:9")


def test_an_unreachable_postgres_is_one_line_fast_and_exit_1() -> None:
    pytest.importorskip("psycopg")
    started = time.monotonic()
    result = runner.invoke(app, ["budgets", "list", "--db", "postgresql://u:secret@127.0.0.1:9/x"])
    assert time.monotonic() - started < 5
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        "error: cannot connect to PostgreSQL at postgresql://u:***@127.0.0.1:9/x"
    )
    assert "secret" not in result.output


def test_usage_top_rows_by_cost(db: str) -> None:
    for user, cost in (("a", "0.01"), ("b", "0.30"), ("c", "0.20")):
        record(db, "--user", user, "--cost", cost)
    rows = as_json(db, "usage", "--tenant", "port-a", "--by", "user", "--order", "cost",
                   "--limit", "2")  # fmt: skip
    assert [r["group"]["user"] for r in rows] == ["b", "c"]
    bad = run(db, "usage", "--tenant", "port-a", "--order", "colour")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: order: ")


def test_a_protected_budget_is_not_deleted(db: str) -> None:
    set_budget(db, "--id", "p", "--meter", "tokens", "--window", "day", "--protected",
               "--policy", "org")  # fmt: skip
    [spec] = as_json(db, "budgets", "list")
    assert spec["protected"] is True and spec["policy"] == "org"
    refused = run(db, "budgets", "delete", "p")
    assert refused.exit_code == 2 and refused.stderr.startswith("error: protected: ")
    set_budget(db, "--id", "p", "--meter", "tokens", "--window", "day")  # replaced: unprotected
    assert "deleted budget p" in ok(db, "budgets", "delete", "p")
