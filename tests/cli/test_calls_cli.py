"""``allotment authorize``, ``heartbeat``, ``commit`` and ``release``: a call's lifecycle from
a shell script, on real SQLite files (``--db``) and through a real ``allotment serve``
(``--url``/``--api-key``). Exit codes: authorize 0 allowed / 1 refused, heartbeat 0 alive /
1 stopped, 2 for bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from allotment.cli import app
from allotment.cli._input import route
from tests.cli.served import remote

runner = CliRunner()

HOSTED = ["budgets", "set", "--id", "hosted", "--tenant", "acme", "--meter", "tokens",
          "--window", "day", "--limit", "100", "--match", "backend=hosted"]  # fmt: skip
SLOTS = ["budgets", "set", "--id", "slots", "--tenant", "acme", "--meter", "concurrency",
         "--window", "lifetime", "--limit", "1"]  # fmt: skip
#: the hosted backend first, the operator's own hardware when its sub-cap is spent
ROUTES = ["--route", "openai/gpt-4o-mini@hosted", "--route", "openai/gpt-4o-mini@own"]


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'calls.db'}"


def run(db: str, *args: str) -> Result:
    return runner.invoke(app, [*args, "--db", db])


def ok(db: str, *args: str) -> str:
    result = run(db, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def authorize(db: str, *args: str) -> Result:
    return run(db, "authorize", "--tenant", "acme", *args)


def answer(result: Result, code: int) -> Any:
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def test_a_spent_sub_cap_falls_back_to_the_next_route(db: str) -> None:
    ok(db, *HOSTED)
    first = authorize(db, *ROUTES, "--input", "60", "--request-id", "r1")
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("allowed request r1 on openai/gpt-4o-mini@hosted, held until")
    assert "skipped" not in first.stdout and "60 tokens" in first.stdout  # the budgets table

    second = authorize(db, *ROUTES, "--input", "60", "--request-id", "r2")
    assert second.exit_code == 0, second.output
    lines = second.stdout.splitlines()
    assert lines[0].startswith("allowed request r2 on openai/gpt-4o-mini@own")
    assert lines[1] == "skipped openai/gpt-4o-mini@hosted: hosted estimate_exceeds_remaining"

    # --provider/--model are the first route's when left out, and may be given alike
    third = answer(authorize(db, "--provider", "openai", "--model", "gpt-4o-mini", *ROUTES,
                             "--input", "60", "--request-id", "r3", "--json"), 0)  # fmt: skip
    assert third["allowed"] and third["request_id"] == "r3"
    assert third["route"] == {"provider": "openai", "model": "gpt-4o-mini", "backend": "own"}
    [skipped] = third["skipped"]
    assert skipped["backend"] == "hosted" and skipped["budget_id"] == "hosted"
    assert skipped["reason"] == "estimate_exceeds_remaining"


def test_a_refusal_exits_with_1_and_says_why(db: str) -> None:
    ok(db, *HOSTED)
    refused = authorize(db, "--route", "openai/gpt-4o-mini@hosted", "--input", "101")
    assert refused.exit_code == 1, refused.output
    lines = refused.stdout.splitlines()
    assert lines[0].startswith("refused request ")
    assert lines[1].startswith("skipped openai/gpt-4o-mini@hosted: hosted ")
    assert "retry at" not in refused.stdout  # a spent budget: waiting does not help
    assert refused.stderr == ""

    # no routes: the backend is a tag like any other
    plain = authorize(db, "--provider", "openai", "--model", "gpt-4o-mini", "--tag",
                      "backend=hosted", "--input", "101", "--request-id", "p")  # fmt: skip
    assert plain.exit_code == 1 and plain.stdout.splitlines()[1].startswith("refused by hosted ")
    decision = answer(authorize(db, "--provider", "openai", "--model", "gpt-4o-mini", "--tag",
                                "backend=hosted", "--input", "101", "--json"), 1)  # fmt: skip
    assert decision["allowed"] is False and decision["route"] is None
    assert [r["budget_id"] for r in decision["refusals"]] == ["hosted"]
    assert decision["refusals"][0]["display"]["limit"] == "100"


def test_a_lease_heartbeats_until_released(db: str) -> None:
    ok(db, *SLOTS)
    assert authorize(db, "--provider", "p", "--model", "m", "--request-id", "l1", "--ttl", "60",
                     "--max-duration", "600").exit_code == 0  # fmt: skip
    alive = run(db, "heartbeat", "l1", "--ttl", "30")
    assert alive.exit_code == 0, alive.output
    assert alive.stdout.startswith("alive lease l1, held until ")
    assert "(at most until " in alive.stdout and "1 leases" in alive.stdout
    beat = answer(run(db, "heartbeat", "l1", "--tenant", "acme", "--json"), 0)
    assert beat["alive"] and not beat["stop"] and beat["reason"] is None

    full = authorize(db, "--provider", "p", "--model", "m", "--request-id", "l2")
    assert full.exit_code == 1
    assert "refused by slots concurrency_limited" in full.stdout and "retry at " in full.stdout
    held = answer(authorize(db, "--provider", "p", "--model", "m", "--json"), 1)
    assert held["retry_at"] == beat["expires_at"]  # when the slot frees up, unless beaten

    assert ok(db, "release", "l1", "--reason", "done") == "request l1: released\n"
    stopped = run(db, "heartbeat", "l1")
    assert stopped.exit_code == 1 and stopped.stdout.startswith("stop lease l1: released")
    ended = answer(run(db, "heartbeat", "l1", "--json"), 1)
    assert ended["stop"] and not ended["alive"] and ended["reason"] == "released"
    assert authorize(db, "--provider", "p", "--model", "m", "--request-id", "l2").exit_code == 0


def test_authorize_then_commit_or_release(db: str) -> None:
    ok(db, *HOSTED)
    base = ("--provider", "openai", "--model", "gpt-4o-mini", "--tag", "backend=hosted")
    assert authorize(db, *base, "--input", "50", "--request-id", "c1").exit_code == 0
    out = ok(db, "commit", "c1", "--input", "70", "--output", "5")
    assert out.startswith("committed event ") and "(request c1)" in out
    assert "used more than the estimate on hosted" in out
    again = json.loads(ok(db, "commit", "c1", "--input", "70", "--output", "5", "--json"))
    assert again["request_id"] == "c1" and again["usage"]["input_tokens"] == 70
    assert "already committed as event" in ok(db, "commit", "c1", "--input", "70",
                                               "--output", "5")  # fmt: skip
    [view] = json.loads(ok(db, "status", "--tenant", "acme", "--tag", "backend=hosted", "--json"))
    assert view["used"] == 75 and view["reserved"] == 0

    assert authorize(db, *base, "--input", "20", "--request-id", "c2").exit_code == 0
    released = json.loads(ok(db, "release", "c2", "--json"))
    assert released == {"request_id": "c2", "state": "released"}
    assert ok(db, "release", "c2") == "request c2: released\n"  # a no-op the second time
    assert ok(db, "release", "c1") == "request c1: committed\n"
    failed = run(db, "commit", "c2", "--status", "error", "--reason", "timeout")
    assert failed.exit_code == 0, failed.output  # late: still recorded

    missing = run(db, "release", "nope")
    assert (
        missing.exit_code == 2
        and missing.stderr.startswith("error: ")
        and "nope" in (missing.stderr)
    )
    gone = run(db, "heartbeat", "nope")
    assert gone.exit_code == 2 and "no lease with id 'nope'" in gone.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--route", "openai"], "--route: expected provider/model or provider/model@backend"),
        (["--route", "openai/"], "--route: expected provider/model"),
        (["--route", "/gpt-4o@own"], "--route: expected provider/model"),
        (["--route", "@own"], "--route: expected provider/model"),
        (["--provider", "openai", "--route", "anthropic/claude"],
         "--route: the first one must be the call's --provider/--model (openai/claude)"),
        (["--model", "gpt-4o", "--route", "openai/gpt-4o-mini"], "--route: the first one must"),
        (["--route", "a/b@x", "--route", "a/b@x"], "--route: routes names a candidate twice"),
        (["--route", "a/b@x", "--route", "c/d@\x07"], "--route: routes[1].backend must not"),
        ([a for i in range(9) for a in ("--route", f"a/b@x{i}")], "--route: routes names more"),
        (["--model", "m"], "--provider: is required (or give --route)"),
        (["--provider", "p"], "--model: is required (or give --route)"),
    ],
)  # fmt: skip
def test_bad_routes_are_one_line_naming_the_option(db: str, args: list[str], message: str) -> None:
    result = authorize(db, *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {message}"), result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stdout == ""


def test_route_labels() -> None:
    assert route("openai/gpt-4o") == {"provider": "openai", "model": "gpt-4o"}
    assert route("openrouter/meta/llama@own") == {
        "provider": "openrouter", "model": "meta/llama", "backend": "own"}  # fmt: skip
    # the backend follows the last @; a trailing @ names none, for a model with an @
    assert route("vertex/claude@2024@hosted")["model"] == "claude@2024"
    assert route("vertex/claude@2024@") == {"provider": "vertex", "model": "claude@2024"}


def test_the_lifecycle_through_the_service(served: tuple[str, str]) -> None:
    assert remote(served, *HOSTED).exit_code == 0
    assert remote(served, *SLOTS).exit_code == 0
    call = ["authorize", "--tenant", "acme", *ROUTES, "--input", "60", "--ttl", "60"]
    first = remote(served, *call, "--request-id", "s1")
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("allowed request s1 on openai/gpt-4o-mini@hosted")
    full = remote(served, *call, "--request-id", "s2")
    assert full.exit_code == 1, full.output
    assert "skipped openai/gpt-4o-mini@own: slots concurrency_limited (retry at" in full.stdout
    refused = answer(remote(served, *call, "--json"), 1)
    assert [s["backend"] for s in refused["skipped"]] == ["hosted", "own"]
    assert refused["retry_at"] is not None

    beat = answer(remote(served, "heartbeat", "s1", "--json"), 0)
    assert beat["alive"] and beat["lease_id"] == "s1"
    committed = remote(served, "commit", "s1", "--input", "60", "--output", "2")
    assert committed.exit_code == 0 and committed.stdout.startswith("committed event ")
    stopped = remote(served, "heartbeat", "s1")
    assert stopped.exit_code == 1 and stopped.stdout.startswith("stop lease s1: committed")

    fell_back = remote(served, *call, "--request-id", "s3")
    assert fell_back.exit_code == 0, fell_back.output
    assert "on openai/gpt-4o-mini@own" in fell_back.stdout
    assert "skipped openai/gpt-4o-mini@hosted: hosted estimate_exceeds_remaining" in (
        fell_back.stdout
    )
    assert remote(served, "release", "s3").stdout == "request s3: released\n"
    bad = remote(served, "authorize", "--tenant", "acme", "--route", "a/b@x", "--route", "a/b@x")
    assert bad.exit_code == 2, bad.output
    assert bad.stderr == "error: --route: routes names a candidate twice\n"
    currency = remote(served, *call, "--currency", "EUR")
    assert currency.exit_code == 2 and currency.stderr.startswith("error: --currency: ")
