"""Money and units in the CLI: tables in human units with their unit, ``--json`` as HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from allotment._answers import Group, RemoteUsageRow
from allotment._render import format_amount, format_money, status_json, usage_json, usage_table
from allotment.cli import app
from allotment.governor import Governor

runner = CliRunner()


def ok(db: str, *args: str) -> str:
    result = runner.invoke(app, [*args, "--db", db])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A EUR cost budget at 0.5 EUR a dollar, a token and an audio budget; 2.40 USD spent."""
    url = f"sqlite:///{tmp_path / 'units.db'}"
    ok(url, "rates", "set", "--source", "USD", "--target", "EUR", "--rate", "0.5",
       "--from", "2020-01-01")  # fmt: skip
    for args in (
        ["--id", "eur-day", "--meter", "cost", "--currency", "EUR", "--limit", "5"],
        ["--id", "tok-day", "--meter", "tokens", "--limit", "12345"],
        ["--id", "audio", "--meter", "audio_seconds", "--limit", "90"],
    ):
        ok(url, "budgets", "set", "--tenant", "acme", "--window", "day", *args)
    ok(url, "record", "--tenant", "acme", "--user", "u1", "--provider", "openai", "--model",
       "gpt-4o-mini", "--output", "200", "--cost", "2.40")  # fmt: skip
    return url


def test_status_table_shows_human_units_with_their_unit(db: str) -> None:
    table = ok(db, "status", "--tenant", "acme", "--user", "u1")
    assert "1.20 EUR" in table and "5.00 EUR" in table and "3.80 EUR" in table
    assert "200 tokens" in table and "12,345 tokens" in table and "90 s" in table


def test_status_json_follows_the_http_convention(db: str) -> None:
    views = {v["budget_id"]: v for v in json.loads(ok(db, "status", "--tenant", "acme", "--json"))}
    eur, tok, audio = views["eur-day"], views["tok-day"], views["audio"]
    assert (eur["used"], eur["limit"], eur["unit"], eur["currency"]) == (
        1_200_000, 5_000_000, "micros", "EUR")  # fmt: skip
    assert eur["display"] == {"used": "1.20", "reserved": "0.00", "limit": "5.00",
                              "remaining": "3.80", "overshoot": "0.00"}  # fmt: skip
    assert (eur["percent"], eur["percent_available"]) == ("24.00", "76.00")
    assert (tok["used"], tok["unit"], tok["display"]["limit"]) == (200, "tokens", "12345")
    assert (audio["limit"], audio["unit"], audio["display"]["limit"]) == (90_000, "ms", "90")


def test_usage_json_is_the_http_row(db: str) -> None:
    [row] = json.loads(ok(db, "usage", "--tenant", "acme", "--by", "user", "--json"))
    assert row["group"] == {"user": "u1"} and row["calls"] == 1
    assert (row["cost_micros"], row["currency"], row["output_tokens"]) == (2_400_000, "USD", 200)
    assert row["display"]["cost"] == "2.40" and row["display"]["output_tokens"] == "200"
    assert "2.40 USD" in ok(db, "usage", "--tenant", "acme", "--by", "user")


def test_a_services_rows_keep_their_currency() -> None:
    """A row from a service whose ledger is in EUR is never labelled with the CLI's USD."""
    totals: dict[str, Any] = {"input_tokens": 5, "output_tokens": 7, "cost_micros": 1_200_000}
    row = RemoteUsageRow(Group(feature="chat"), calls=1, totals=totals, currency="EUR")
    console = Console(width=160, record=True)
    console.print(usage_table([row], ["feature"], "USD"))
    text = console.export_text()
    assert "1.20 EUR" in text and "USD" not in text
    assert usage_json(row, "USD")["currency"] == "EUR"
    assert usage_json(row, "USD")["display"]["cost"] == "1.20"


@pytest.mark.parametrize(
    ("meter", "units", "currency", "shown"),
    [
        ("cost", 1_200_000, "EUR", "1.20 EUR"),
        ("cost", 1_234_500, "USD", "1.2345 USD"),
        ("cost", 1_234_000_000, "JPY", "1,234 JPY"),
        ("tokens", 12_345, None, "12,345 tokens"),
        ("output_tokens", 7, None, "7 tokens"),
        ("audio_seconds", 3_500, None, "3.5 s"),
        ("requests", 3, None, "3 requests"),
        ("credits", 40, None, "40 credits"),
        ("tokens", None, None, "-"),
    ],
)
def test_amounts_in_tables(meter: str, units: int | None, currency: str | None, shown: str) -> None:
    assert format_amount(meter, units, currency) == shown


def test_money_without_a_currency_keeps_two_decimals() -> None:
    assert format_money(5_000_000) == "5.00"


def test_status_json_names_the_ledgers_currency() -> None:
    """A cost budget without a currency of its own counts in the ledger's."""
    gov = Governor("memory://", currency="EUR", pricer=None)
    gov.create_budget({"id": "c", "tenant": "t", "meter": "cost", "window": "day", "limit": "2"})
    [view] = status_json(gov.status({"tenant": "t"}), "EUR")
    assert (view["unit"], view["currency"], view["display"]["limit"]) == ("micros", "EUR", "2.00")
    [bare] = [v.to_dict() for v in gov.status({"tenant": "t"})]
    assert bare["currency"] is None  # a view alone cannot know the ledger's currency
