"""``allotment plans``: plans set, listed, shown, deleted, members assigned, on the store
(``--db``) and through a real ``allotment serve`` (``--url``/``--api-key``), answering
alike."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.served import Served, both, local, remote

TIERS = """
plans:
  - {id: core, tenant: relay, per: install, default: true,
     budgets: [{id: credits, meter: credits, window: lifetime, limit: 100}]}
  - {id: pro, tenant: relay, per: install,
     budgets: [{id: credits, meter: credits, window: month, limit: 1000}]}
"""
MAX = ('{"id": "max", "tenant": "relay", "per": "install", "budgets": '
       '[{"id": "credits", "meter": "credits", "window": "month"}]}')  # fmt: skip


def test_plans_through_the_service_and_on_the_file(served: Served, tmp_path: Path) -> None:
    tiers = tmp_path / "tiers.yaml"
    tiers.write_text(TIERS)
    made = remote(served, "plans", "set", "--file", str(tiers))
    assert made.exit_code == 0, made.output
    assert "saved 2 plan(s): core (version 1), pro (version 1)" in made.stdout
    assert "core.credits" in made.stdout and "1,000 credits" in made.stdout
    added = local(served, "plans", "set", "--json", MAX)
    assert added.exit_code == 0, added.output
    assert "max (version 1)" in added.stdout and "unlimited" in added.stdout
    on_file, through = both(served, "plans", "list", "--tenant", "relay")
    assert on_file == through
    assert [(p["id"], p["version"], p["key"]) for p in through] == [
        ("core", 1, "relay#core"), ("max", 1, "relay#max"), ("pro", 1, "relay#pro")]  # fmt: skip
    on_file, through = both(served, "plans", "show", "pro", "--tenant", "relay")
    assert on_file == through and through["budgets"][0]["limit"] == "1000"

    assigned = remote(served, "plans", "assign", "relay", "i-1", "pro")
    assert assigned.exit_code == 0, assigned.output
    assert "i-1 of relay is on plan pro" in assigned.stdout and "usage carry" in assigned.stdout
    reset = json.loads(local(served, "plans", "assign", "relay", "i-1", "max", "--reset",
                             "--json").stdout)  # fmt: skip
    assert (reset["plan"], reset["epoch"], reset["usage"]) == ("max", 1, "reset")
    on_file, through = both(served, "plans", "of", "relay", "i-1")
    assert on_file == through == reset
    assert both(served, "plans", "of", "relay", "i-2") == (None, None)
    default = remote(served, "plans", "of", "relay", "i-2")
    assert "has no plan assigned" in default.stdout
    on_file, through = both(served, "status", "--tenant", "relay", "--install", "i-1")
    assert [(v["budget_id"], v["remaining"]) for v in through] == [("max.credits", None)]

    deleted = remote(served, "plans", "delete", "max", "--tenant", "relay")
    assert deleted.exit_code == 0 and "deleted plan max" in deleted.stdout
    for run in (local, remote):
        gone = run(served, "plans", "show", "max", "--tenant", "relay")
        assert gone.exit_code == 2 and gone.stderr.startswith("error: no plan with id 'max'")


def test_mistakes_are_one_line_naming_the_field(served: Served, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: gold\nper: install\nbudgets: [{id: credits, meter: credits}]\n")
    for run in (local, remote):
        neither = run(served, "plans", "set")
        assert neither.exit_code == 2 and "--file: give --file or --json" in neither.stderr
        no_json = run(served, "plans", "set", "--json", "{nope")
        assert no_json.exit_code == 2 and no_json.stderr.startswith("error: --json: not JSON")
        window = run(served, "plans", "set", "--file", str(bad))
        assert window.exit_code == 2
        assert window.stderr.startswith("error: budgets[0].window"), window.stderr
        unknown = run(served, "plans", "assign", "acme", "i-1", "gold")
        assert unknown.exit_code == 2 and "no plan with id 'gold'" in unknown.stderr
        usage = run(served, "plans", "assign", "acme", "", "gold")
        assert usage.exit_code == 2 and usage.stderr.startswith("error: member")
