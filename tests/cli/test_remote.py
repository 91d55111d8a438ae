"""The CLI's remote mode: the same commands through a real ``allotment serve``.

Each command runs twice on the same database, once on the file (``--db``) and
once through the service (``--url``/``--api-key``, or their environment
variables), and must answer the same.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from allotment.cli import app
from tests.cli.served import both, local, remote, runner
from tests.e2e.server import ADMIN


def test_budgets_through_the_service(served: tuple[str, str], tmp_path: Path) -> None:
    set_args = ["budgets", "set", "--id", "r-day", "--tenant", "acme", "--meter", "tokens",
                "--window", "day", "--limit", "1000", "--soft", "50"]  # fmt: skip
    made = remote(served, *set_args)
    assert made.exit_code == 0 and "saved 1 budget(s)" in made.stdout
    again = remote(served, *set_args[:-4], "--limit", "2000")  # a replacement: wholesale
    assert again.exit_code == 0, again.output
    on_file, through = both(served, "budgets", "get", "r-day")
    assert on_file == through and through["limit"] == "2000" and through["soft"] == ["80"]
    on_file, through = both(served, "budgets", "list", "--tenant", "acme")
    assert on_file == through and [b["id"] for b in through] == ["r-day"]
    table = remote(served, "budgets", "list").stdout
    assert "r-day" in table and "2,000" in table
    file = tmp_path / "b.yaml"
    file.write_text("budgets:\n  - {id: r-week, tenant: acme, meter: tokens, window: week}\n"
                    "pricing: {unknown_model: deny}\n")  # fmt: skip
    assert "saved 1 budget(s)" in remote(served, "budgets", "set", "--file", str(file)).stdout
    with_rates = tmp_path / "rates.yaml"
    with_rates.write_text(
        "rates: [{source: USD, target: EUR, rate: '-1', effective_from: '2026-01-01T00:00:00Z'}]\n"
    )
    refused = remote(served, "budgets", "set", "--file", str(with_rates))
    assert refused.exit_code == 2 and refused.stderr.startswith("error: rates[0].rate: ")
    assert "deleted budget r-week" in remote(served, "budgets", "delete", "r-week").stdout
    gone = remote(served, "budgets", "get", "r-week")
    assert gone.exit_code == 2 and "r-week" in gone.stderr


def test_record_status_and_usage_through_the_service(served: tuple[str, str]) -> None:
    remote(served, "budgets", "set", "--id", "g-life", "--tenant", "globex", "--meter",
           "tokens", "--window", "lifetime", "--limit", "100", "--match", "group=eng")  # fmt: skip
    call = ["record", "--tenant", "globex", "--user", "u1", "--group", "eng", "--provider",
            "openai", "--model", "gpt-4o-mini", "--input", "60", "--request-id", "r1"]  # fmt: skip
    recorded = remote(served, *call)
    assert recorded.exit_code == 0 and "recorded event" in recorded.stdout
    assert "already recorded as" in remote(served, *call).stdout
    event = json.loads(remote(served, *call, "--json").stdout)
    assert event["request_id"] == "r1" and event["usage"]["input_tokens"] == 60
    on_file, through = both(served, "status", "--tenant", "globex", "--groups", "eng")
    assert (
        on_file == through and through[0]["used"] == 60 and through[0]["state"] == "within_budget"
    )
    assert "60.00%" in remote(served, "status", "--tenant", "globex", "--group", "eng").stdout
    on_file, through = both(served, "usage", "--tenant", "globex", "--by", "user")
    assert on_file == through and through[0]["group"] == {"user": "u1"}
    assert "u1" in remote(served, "usage", "--tenant", "globex", "--by", "user").stdout
    currency = remote(served, *call, "--currency", "EUR")
    assert currency.exit_code == 2 and currency.stderr.startswith("error: --currency: ")


def test_money_and_units_through_the_service(served: tuple[str, str]) -> None:
    """A EUR budget reads alike on the file and through the service: integers in
    ``unit``, the budget's ``currency``, and ``display`` for people."""
    assert local(served, "rates", "set", "--source", "USD", "--target", "EUR", "--rate", "0.5",
                 "--from", "2020-01-01").exit_code == 0  # fmt: skip
    made = remote(served, "budgets", "set", "--id", "euro-day", "--tenant", "euro", "--meter",
                  "cost", "--currency", "EUR", "--window", "day", "--limit", "5")  # fmt: skip
    assert made.exit_code == 0, made.output
    spent = remote(served, "record", "--tenant", "euro", "--user", "u1", "--provider", "openai",
                   "--model", "gpt-4o-mini", "--cost", "2.40", "--request-id", "eu1")  # fmt: skip
    assert spent.exit_code == 0, spent.output
    on_file, through = both(served, "status", "--tenant", "euro")
    assert on_file == through
    [view] = through
    assert (view["used"], view["unit"], view["currency"]) == (1_200_000, "micros", "EUR")
    assert (view["display"]["used"], view["display"]["limit"]) == ("1.20", "5.00")
    assert "1.20 EUR" in remote(served, "status", "--tenant", "euro").stdout
    on_file, through = both(served, "usage", "--tenant", "euro", "--by", "user")
    assert on_file == through
    assert (through[0]["currency"], through[0]["display"]["cost"]) == ("USD", "2.40")


def test_keys_through_the_service(served: tuple[str, str]) -> None:
    made = remote(served, "keys", "create", "--role", "viewer", "--tenant", "acme")
    assert made.exit_code == 0, made.output
    key_id, secret = made.stdout.split()[0], made.stdout.split()[-1]
    assert secret.startswith(f"ak_{key_id}_")
    on_file, through = both(served, "keys", "list", "--tenant", "acme")
    assert on_file == through and [k["id"] for k in through] == [key_id]
    assert f"revoked {key_id}" in remote(served, "keys", "revoke", key_id).stdout
    viewer = runner.invoke(app, ["status", "--tenant", "acme", "--url", served[1]],
                           env={"ALLOTMENT_API_KEY": secret})  # fmt: skip
    assert viewer.exit_code == 2 and viewer.stderr.startswith("error: ")  # revoked: 401


def test_the_environment_selects_remote_mode(served: tuple[str, str]) -> None:
    env = {"ALLOTMENT_URL": served[1], "ALLOTMENT_API_KEY": ADMIN}
    result = runner.invoke(app, ["prices", "unknown", "--json"], env=env)
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    bad = runner.invoke(app, ["status", "--tenant", "acme"], env=env | {"ALLOTMENT_API_KEY": "x"})
    assert bad.exit_code == 2 and "unknown or revoked API key" in bad.stderr


def test_budget_ids_are_scoped_by_tenant_through_the_service(served: tuple[str, str]) -> None:
    for tenant, limit in (("acme", "10"), ("globex", "20"), ("globex", "30")):
        made = remote(served, "budgets", "set", "--id", "shared", "--tenant", tenant,
                      "--meter", "tokens", "--window", "day", "--limit", limit)  # fmt: skip
        assert made.exit_code == 0, made.output  # the second globex one replaces the first
    for run in (local, remote):
        ambiguous = run(served, "budgets", "get", "shared")
        assert ambiguous.exit_code == 2 and "tenant" in ambiguous.stderr, ambiguous.output
    on_file, through = both(served, "budgets", "get", "shared", "--tenant", "globex")
    assert on_file == through and through["limit"] == "30"
    gone = remote(served, "budgets", "delete", "shared", "--tenant", "globex")
    assert gone.exit_code == 0, gone.output
    on_file, through = both(served, "budgets", "get", "shared")  # the only one left
    assert on_file == through and through["tenant"] == "acme" and through["limit"] == "10"
    assert remote(served, "budgets", "delete", "shared", "--tenant", "acme").exit_code == 0


def test_the_readme_budgets_file_and_rates_through_the_service(
    served: tuple[str, str], tmp_path: Path
) -> None:
    """The README's budgets file, rates and all, applies through the service as it
    does on the file: in one request, all or nothing."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", readme[readme.index("## Budgets") :], re.S)
    assert block is not None
    path = tmp_path / "budgets.yaml"
    path.write_text(block.group(1))
    applied = remote(served, "budgets", "set", "--file", str(path))
    assert applied.exit_code == 0 and "saved 3 budget(s)" in applied.stdout, applied.output
    on_file, through = both(served, "rates", "list")
    assert on_file == through
    assert {"source": "USD", "target": "EUR", "rate": "0.92",
            "effective_from": "2026-01-01T00:00:00+00:00"} in through  # fmt: skip
    made = remote(served, "rates", "set", "--source", "USD", "--target", "GBP", "--rate", "0.79")
    assert made.exit_code == 0 and "1 USD = 0.79 GBP" in made.stdout, made.output
    on_file, through = both(served, "budgets", "get", "org-daily")
    assert on_file == through and through["currency"] == "EUR"
    broken = tmp_path / "broken.yaml"
    broken.write_text(block.group(1).replace("window: day@Europe/Berlin", "window: fortnight", 1))
    refused = remote(served, "budgets", "set", "--file", str(broken))
    assert refused.exit_code == 2 and "budgets[1].window" in refused.stderr, refused.output
