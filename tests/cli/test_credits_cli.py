"""``allotment credits``: a pool's grants, balances, auto top-up and ledger, on the store
(``--db``) and through a real ``allotment serve`` (``--url``/``--api-key``), answering
alike."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import Result

from allotment.cli import app
from allotment.governor import Governor
from allotment.payments import TestGateway
from tests.cli.served import both, local, remote, runner

POOL = ["budgets", "set", "--id", "plan", "--tenant", "acme", "--meter", "tokens", "--window",
        "month", "--limit", "100", "--credits"]  # fmt: skip
#: a payment's grant, sent as a payment system would send it again
PAYMENT = ["credits", "grant", "plan", "50", "--tenant", "acme", "--idempotency-key", "pay_1",
           "--effective-at", "2026-01-01T00:00:00Z", "--meta", "order=o-7"]  # fmt: skip


def test_grants_balances_and_the_ledger_through_the_service(served: tuple[str, str]) -> None:
    made = remote(served, *POOL)
    assert made.exit_code == 0, made.output
    added = remote(served, *PAYMENT)
    assert added.exit_code == 0, added.output
    assert added.stdout.startswith("added grant g_") and "50 tokens to pool plan" in added.stdout
    again = local(served, *PAYMENT, "--json")  # the same payment, now on the file
    assert again.exit_code == 0, again.output
    replay = json.loads(again.stdout)
    assert replay["replayed"] and replay["metadata"] == {"order": "o-7"}
    other = remote(served, "credits", "grant", "plan", "51", "--tenant", "acme",
                   "--idempotency-key", "pay_1")  # fmt: skip
    assert other.exit_code == 2 and "other terms" in other.stderr
    promo = ["credits", "grant", "plan", "20", "--tenant", "acme", "--kind", "promotional",
             "--id", "promo", "--expires-at", "2099-01-01"]  # fmt: skip
    assert remote(served, *promo).exit_code == 0
    on_file, through = both(served, "credits", "show", "plan", "--tenant", "acme")
    assert on_file == through
    assert [(g["id"], g["available"]) for g in through["grants"]] == [
        ("promo", 20), (replay["id"], 50)]  # fmt: skip
    table = remote(served, "credits", "show", "plan", "--tenant", "acme").stdout
    assert "promo" in table and "available 70 tokens, debt 0 tokens" in table
    voided = remote(served, "credits", "void", "plan", "promo", "--tenant", "acme")
    assert voided.exit_code == 0 and "voided grant promo" in voided.stdout
    on_file, through = both(served, "credits", "ledger", "plan", "--tenant", "acme")
    assert on_file == through
    assert [(e["kind"], e["grant_id"], e["balance"]) for e in through] == [
        ("grant", replay["id"], 50), ("grant", "promo", 70), ("void", "promo", 50)]  # fmt: skip
    page = json.loads(
        local(
            served,
            "credits",
            "ledger",
            "plan",
            "--tenant",
            "acme",
            "--after-id",
            str(through[0]["id"]),
            "--limit",
            "1",
            "--json",
        ).stdout
    )
    assert [e["kind"] for e in page] == ["grant"]  # fmt: skip
    ledger = local(served, "credits", "ledger", "plan", "--tenant", "acme").stdout
    assert "void" in ledger and "50 tokens" in ledger


def test_mistakes_are_one_line_naming_the_field(served: tuple[str, str]) -> None:
    plain = ["budgets", "set", "--id", "plain", "--tenant", "acme", "--meter", "tokens",
             "--window", "day", "--limit", "9"]  # fmt: skip
    assert remote(served, *plain).exit_code == 0
    assert remote(served, *POOL[:3], "pool2", *POOL[4:]).exit_code == 0
    for run in (local, remote):
        not_a_pool = run(served, "credits", "grant", "plain", "5", "--tenant", "acme")
        assert not_a_pool.exit_code == 2 and not_a_pool.stderr.startswith("error: pool: ")
        fraction = run(served, "credits", "grant", "pool2", "1.5", "--tenant", "acme")
        assert fraction.exit_code == 2 and fraction.stderr.startswith("error: amount: ")
        member = run(served, "credits", "grant", "pool2", "5", "--tenant", "acme", "--member", "x")
        assert member.exit_code == 2 and member.stderr.startswith("error: member: ")
        unknown = run(served, "credits", "show", "nope", "--tenant", "acme")
        assert unknown.exit_code == 2 and "nope" in unknown.stderr
        bad_time = run(served, "credits", "grant", "pool2", "5", "--tenant", "acme",
                       "--expires-at", "soon")  # fmt: skip
        assert bad_time.exit_code == 2 and bad_time.stderr.startswith("error: --expires-at: ")


def test_credits_on_a_store_of_its_own(tmp_path: Path) -> None:
    """Debt and repayment, and a per-user pool, with --db alone."""
    db = ["--db", f"sqlite:///{tmp_path / 'own.db'}"]

    def run(*args: str) -> Result:
        result = runner.invoke(app, [*args, *db])
        assert result.exit_code == 0, result.output
        return result

    run("budgets", "set", "--id", "seats", "--tenant", "acme", "--meter", "tokens", "--window",
        "month", "--limit", "0", "--credits", "--per", "user")  # fmt: skip
    run("credits", "grant", "seats", "10", "--tenant", "acme", "--member", "u1", "--id", "a")
    run("record", "--tenant", "acme", "--user", "u1", "--provider", "openai", "--model",
        "gpt-4o-mini", "--input", "25", "--output", "0")  # fmt: skip
    owed = json.loads(run("credits", "show", "seats", "--tenant", "acme", "--member", "u1",
                          "--json").stdout)  # fmt: skip
    assert (owed["member"], owed["available"], owed["debt"]) == ("u1", 0, 15)
    run("credits", "grant", "seats", "40", "--tenant", "acme", "--member", "u1", "--id", "b")
    table = run("credits", "show", "seats", "--tenant", "acme", "--member", "u1").stdout
    assert "member u1" in table and "available 25 tokens, debt 0 tokens" in table
    kinds = json.loads(run("credits", "ledger", "seats", "--tenant", "acme", "--json").stdout)
    assert [e["kind"] for e in kinds] == ["grant", "debit", "debt", "grant", "repayment"]
    unnamed = runner.invoke(app, ["credits", "show", "seats", "--tenant", "acme", *db])
    assert unnamed.exit_code == 2 and unnamed.stderr.startswith("error: member: ")


def test_auto_topup_is_shown_and_resumed_on_the_store_and_through_the_service(
    served: tuple[str, str],
) -> None:
    topped = {"id": "topped", "tenant": "desk", "meter": "tokens", "window": "month",
              "limit": 0, "per": "user", "credits": True,
              "auto_topup": {"threshold": 20, "amount": 50, "monthly_cap": 100}}  # fmt: skip
    with Governor(served[0], gateway=TestGateway(outcome="failed"), topup_worker=False) as gov:
        gov.create_budget(topped)
        gov.create_budget(topped | {"id": "flat", "per": None, "limit": 1000, "auto_topup": None})
        gov.add_grant("topped", 30, tenant="desk", member="u1")
        gov.authorize("r1", {"tenant": "desk", "user": "u1"}, "openai", "gpt-4o-mini",
                      {"output_tokens": 15})  # fmt: skip
        gov.commit("r1", {"output_tokens": 15})  # 15 left: below 20, one top-up starts
        [failed] = gov.run_topups()
    show = ["credits", "show", "topped", "--tenant", "desk", "--member", "u1"]
    on_file, through = both(served, *show)
    assert on_file == through
    assert through["auto_topup"] == {"threshold": 20, "amount": 50, "target": None,
                                     "monthly_cap": 100, "status": "auto_topup_failed",
                                     "latest": failed.to_dict()}  # fmt: skip
    line = remote(served, *show).stdout.splitlines()[-1]
    assert line == ("auto top-up: below 20 tokens, buy 50 tokens (at most 100 tokens a month); "
                    "status: auto_topup_failed; latest: failed 50 tokens at "
                    f"{failed.updated_at:%Y-%m-%d %H:%M} UTC (test gateway: failed)")  # fmt: skip
    resume = ["credits", "resume", "topped", "--tenant", "desk"]
    unnamed = remote(served, *resume)
    assert unnamed.exit_code == 2 and unnamed.stderr.startswith("error: member: ")
    resumed = remote(served, *resume, "--member", "u1")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.strip() == "resumed auto top-up of pool topped member u1"
    again = local(served, *resume, "--member", "u1", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout) == {"resumed": False}
    told = local(served, *resume, "--member", "u1").stdout.strip()
    assert told == "auto top-up of pool topped member u1 was not paused: nothing changed"
    line = local(served, *show).stdout.splitlines()[-1]
    assert "status: active; latest: resumed 50 tokens" in line
    flat = remote(served, "credits", "show", "flat", "--tenant", "desk")
    assert flat.exit_code == 0 and "auto top-up" not in flat.stdout  # it has none
