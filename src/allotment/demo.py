"""``allotment demo``: one simulated day of three systems allotment replaces.

Why a demo: it shows, on real storage and in a few seconds, that systems 1, 2
and 5 of DESIGN.md are configuration, not code — per-tenant token budgets with
soft and hard caps (a CRM), org/group/user cost policies with a user override
and bring-your-own-key calls left out (a gateway, in EUR), and pooled plus
per-agent token limits (an agent orchestrator). A fake clock walks through
08:00-20:00 UTC of one day (today, from the CLI) and a seeded ``random.Random``
plans every call, so the same seed prints the same report on every run.
"""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console

from allotment._render import status_table, usage_table
from allotment.core.decisions import BudgetView
from allotment.errors import ConfigurationError
from allotment.governor import Governor
from allotment.pricing.static import ModelRate, StaticPricer

__all__ = ["DEMO_DB", "run_demo"]

DEMO_DB = "sqlite:///allotment-demo.db"
START = datetime(2026, 11, 23, 8, tzinfo=UTC)
DAY_SECONDS = 12 * 3600
ERROR_RATE = 0.04

_NOT_BYOK = {"tags.byok": "true"}
CRM_BUDGETS: list[dict[str, Any]] = [
    {"id": "port-a-daily", "tenant": "port-a", "meter": "tokens", "window": "day",
     "limit": "200000", "soft": [80]},
    {"id": "port-a-weekly", "tenant": "port-a", "meter": "tokens", "window": "week",
     "limit": "1000000", "soft": [80]},
    {"id": "port-b-daily", "tenant": "port-b", "meter": "tokens", "window": "day",
     "limit": "60000", "soft": [80]},
    {"id": "port-b-weekly", "tenant": "port-b", "meter": "tokens", "window": "week",
     "limit": "300000", "soft": [80]},
]  # fmt: skip
GATEWAY_BUDGETS: list[dict[str, Any]] = [
    {"id": "globex-user-daily", "name": "org policy", "tenant": "globex", "meter": "cost",
     "window": "day", "per": "user", "limit": "2.00", "exclude": _NOT_BYOK},
    {"id": "globex-interns-daily", "name": "interns policy", "tenant": "globex",
     "meter": "cost", "window": "day", "per": "user", "match": {"group": "interns"},
     "limit": "0.50", "exclude": _NOT_BYOK},
    {"id": "globex-alice-daily", "name": "alice's own policy", "tenant": "globex",
     "meter": "cost", "window": "day", "per": "user", "match": {"user": "alice"},
     "overrides": True, "limit": "5.00", "exclude": _NOT_BYOK},
    {"id": "globex-org-monthly", "name": "org cap", "tenant": "globex", "meter": "cost",
     "window": "month", "limit": "100.00", "exclude": _NOT_BYOK},
]  # fmt: skip
AGENT_BUDGETS: list[dict[str, Any]] = [
    {"id": "orchestrator-daily", "tenant": "orchestrator", "meter": "tokens",
     "window": "day", "limit": "400000", "soft": [80]},
    {"id": "orchestrator-per-agent", "tenant": "orchestrator", "meter": "tokens",
     "window": "day", "per": "agent", "limit": "120000", "soft": [80]},
]  # fmt: skip
for _spec in GATEWAY_BUDGETS:
    _spec["currency"] = "EUR"
#: Budget ids the demo creates: the only ones a database may hold for the demo to wipe it.
DEMO_BUDGET_IDS = frozenset(b["id"] for b in (*CRM_BUDGETS, *GATEWAY_BUDGETS, *AGENT_BUDGETS))

#: Made-up EUR prices per million tokens: the gateway tenant is billed in EUR.
EUR_RATES = {
    "gpt-4o": ModelRate(Decimal("2.30"), Decimal("9.20")),
    "gpt-4o-mini": ModelRate(Decimal("0.14"), Decimal("0.55")),
    "claude-3-5-haiku": ModelRate(Decimal("0.75"), Decimal("3.70")),
}
#: Made-up USD prices for the CRM and the orchestrator (their budgets count tokens).
USD_RATES = {
    "gpt-4o-mini": ModelRate(Decimal("0.15"), Decimal("0.60")),
    "claude-3-5-sonnet": ModelRate(Decimal("3.00"), Decimal("15.00")),
}
_PROVIDERS = {"gpt-4o": "openai", "gpt-4o-mini": "openai", "claude-3-5-haiku": "anthropic"}
#: feature -> (prompt tokens low, high, max_tokens)
CRM_FEATURES = {"summarize": (1500, 4000, 512), "draft-reply": (800, 2000, 1024),
                "classify": (200, 600, 16)}  # fmt: skip
#: gateway user -> (groups, calls on the org key, calls on their own key, models)
GATEWAY_USERS: dict[str, tuple[tuple[str, ...], int, int, tuple[str, ...]]] = {
    "alice": ((), 110, 12, ("gpt-4o", "gpt-4o", "claude-3-5-haiku")),
    "bob": ((), 60, 0, ("gpt-4o", "gpt-4o-mini")),
    "carol": (("interns",), 40, 0, ("gpt-4o", "claude-3-5-haiku")),
    "dave": (("interns",), 12, 0, ("gpt-4o-mini", "claude-3-5-haiku")),
    "erin": ((), 20, 0, ("claude-3-5-haiku",)),
}
#: agent -> (calls, prompt tokens low, high, max_tokens)
AGENTS = {"planner": (15, 1500, 3000, 800), "coder": (70, 2000, 5000, 2000),
          "reviewer": (30, 2000, 4000, 600), "tester": (35, 1000, 3000, 1000)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One call of the simulated day: when, who, on what, and its size."""

    at: datetime
    subject: dict[str, Any]
    provider: str
    model: str
    prompt_tokens: int
    max_tokens: int


@dataclass(slots=True)
class Tally:
    """What happened to the calls: the summary line of the report."""

    allowed: int = 0
    errors: int = 0
    refused: Counter[str] = field(default_factory=Counter)


class FakeClock:
    """A clock the demo sets call by call; governors read it through ``__call__``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# --- planning -----------------------------------------------------------------------


def _at(rng: random.Random) -> datetime:
    return START + timedelta(seconds=rng.randrange(DAY_SECONDS))


def crm_calls(rng: random.Random) -> Iterator[PlannedCall]:
    """System 1: two ports, five users, three features on one model."""
    for tenant, count in (("port-a", 85), ("port-b", 55)):
        for _ in range(count):
            feature = rng.choice(sorted(CRM_FEATURES))
            low, high, max_tokens = CRM_FEATURES[feature]
            subject = {"tenant": tenant, "user": f"u{rng.randint(1, 5)}", "feature": feature}
            prompt = rng.randint(low, high)
            yield PlannedCall(_at(rng), subject, "openai", "gpt-4o-mini", prompt, max_tokens)


def gateway_calls(rng: random.Random) -> Iterator[PlannedCall]:
    """System 2: globex users on the org key, and alice on her own key too."""
    for user, (groups, org_calls, own_calls, models) in GATEWAY_USERS.items():
        for n in range(org_calls + own_calls):
            subject: dict[str, Any] = {"tenant": "globex", "user": user, "groups": list(groups)}
            if n < org_calls:
                subject["key"] = "org-key-7f3a"
            else:
                subject |= {"key": f"{user}-own-91c2", "tags": {"byok": "true"}}
            model = rng.choice(models)
            prompt = rng.randint(2000, 12000)
            yield PlannedCall(_at(rng), subject, _PROVIDERS[model], model, prompt, 1500)


def agent_calls(rng: random.Random) -> Iterator[PlannedCall]:
    """System 5: four agents sharing a daily pool, each with its own limit."""
    for agent, (count, low, high, max_tokens) in AGENTS.items():
        for _ in range(count):
            subject = {
                "tenant": "orchestrator",
                "agent": agent,
                "session": f"run-{rng.randint(1, 6)}",
            }
            prompt = rng.randint(low, high)
            yield PlannedCall(
                _at(rng), subject, "anthropic", "claude-3-5-sonnet", prompt, max_tokens
            )


def plan_day(rng: random.Random) -> list[PlannedCall]:
    """Every call of the day in time order (ties keep planning order)."""
    calls = [*crm_calls(rng), *gateway_calls(rng), *agent_calls(rng)]
    return sorted(calls, key=lambda c: c.at)


# --- running ------------------------------------------------------------------------


def _actual(rng: random.Random, call: PlannedCall, failed: bool) -> dict[str, int]:
    """Usually less than the estimate; one call in ten underestimated its prompt."""
    prompt = call.prompt_tokens
    if rng.random() < 0.1:
        prompt = int(prompt * rng.uniform(1.05, 1.25))
    output = 0 if failed else int(call.max_tokens * rng.uniform(0.3, 1.0))
    return {"input_tokens": prompt, "output_tokens": output}


def simulate(
    calls: Iterable[PlannedCall], usd: Governor, eur: Governor, clock: FakeClock, rng: random.Random
) -> Tally:
    """Authorize each call with its estimate, then commit what it used (or count the refusal)."""
    tally = Tally()
    for n, call in enumerate(calls):
        clock.now = call.at
        gov = eur if call.subject["tenant"] == "globex" else usd
        request_id = f"demo-{n:05d}"
        estimate = {"input_tokens": call.prompt_tokens, "output_tokens": call.max_tokens}
        decision = gov.authorize(request_id, call.subject, call.provider, call.model, estimate)
        if not decision.allowed:
            tally.refused[str(decision.reason)] += 1
            continue
        tally.allowed += 1
        failed = rng.random() < ERROR_RATE
        tally.errors += failed
        used = _actual(rng, call, failed)
        gov.commit(request_id, used, status="error" if failed else "success")
    return tally


# --- the database -------------------------------------------------------------------


def _demo_file(url: str) -> Path | None:
    """The SQLite file behind ``url`` (None for in-memory stores)."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return None
    if parts.scheme != "sqlite":
        raise ConfigurationError(f"the demo runs on sqlite:///FILE or memory://, not {url!r}")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    return None if path in ("", ":memory:") else Path(path)


def _check_disposable(path: Path) -> None:
    """Refuse to wipe a database holding anything but the demo's own budgets.

    The demo deletes its database to be repeatable; a mistyped ``--db`` must
    not cost an operator their real ledger.
    """
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            ids = {row[0] for row in conn.execute("SELECT id FROM budgets")}
    except sqlite3.Error:
        ids = None
    if ids is None or not ids <= DEMO_BUDGET_IDS:
        raise ConfigurationError(f"{path} is not a demo database; refusing to delete it")


def reset_database(url: str) -> None:
    """Delete the demo database file and its WAL companions, if they exist."""
    path = _demo_file(url)
    if path is None:
        return
    _check_disposable(path)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextmanager
def _governors(url: str, clock: FakeClock) -> Iterator[tuple[Governor, Governor]]:
    """A USD governor and, on the same store URL, an EUR one for the gateway tenant.

    A governor has one currency; two on one file share the ledger safely.
    """
    dollars, euros = StaticPricer(USD_RATES), StaticPricer(EUR_RATES, currency="EUR")
    with (
        Governor(url, pricer=dollars, clock=clock) as usd,
        Governor(url, pricer=euros, currency="EUR", clock=clock) as eur,
    ):
        for spec in (*CRM_BUDGETS, *AGENT_BUDGETS):
            usd.set_budget(spec)
        for spec in GATEWAY_BUDGETS:
            eur.set_budget(spec)
        yield usd, eur


# --- reporting ----------------------------------------------------------------------


def _views(gov: Governor, subjects: Iterable[dict[str, Any]]) -> list[BudgetView]:
    """Status of several members in one list; pooled budgets appear once."""
    seen: dict[tuple[str, str], BudgetView] = {}
    for subject in subjects:
        for view in gov.status(subject):
            seen.setdefault((view.budget_id, view.member), view)
    return list(seen.values())


def _summary(tally: Tally, start: datetime) -> str:
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(tally.refused.items()))
    refused = sum(tally.refused.values())
    total = tally.allowed + refused
    return (
        f"{total} calls on {start:%Y-%m-%d} 08:00-20:00 UTC: {tally.allowed} allowed, "
        f"{refused} refused ({reasons or 'none'}), {tally.errors} errors"
    )


def report_crm(gov: Governor, console: Console) -> None:
    """System 1: each port's budgets and port-a's usage per feature."""
    console.rule("System 1 - CRM with per-tenant token budgets")
    for tenant in ("port-a", "port-b"):
        views = gov.status({"tenant": tenant})
        console.print(status_table(views, gov.currency, title=tenant, brief=True))
    rows = gov.usage("port-a", ["feature"])
    console.print(usage_table(rows, ["feature"], gov.currency, title="port-a usage by feature"))


def report_gateway(gov: Governor, console: Console) -> None:
    """System 2: every user's policies (alice's override in force) and spend per user."""
    console.rule("System 2 - gateway with cost policies (EUR)")
    subjects = [
        {"tenant": "globex", "user": user, "groups": list(groups)}
        for user, (groups, *_) in GATEWAY_USERS.items()
    ]
    views = _views(gov, subjects)
    console.print(status_table(views, gov.currency, title="globex policies", brief=True))
    rows = gov.usage("globex", ["user"])
    console.print(usage_table(rows, ["user"], gov.currency, title="globex spend per user"))


def report_agents(gov: Governor, console: Console) -> None:
    """System 5: the shared pool, each agent's limit, and usage per agent."""
    console.rule("System 5 - agent orchestrator")
    views = _views(gov, ({"tenant": "orchestrator", "agent": a} for a in AGENTS))
    console.print(status_table(views, gov.currency, title="orchestrator", brief=True))
    rows = gov.usage("orchestrator", ["agent"])
    console.print(usage_table(rows, ["agent"], gov.currency, title="orchestrator usage by agent"))


def run_demo(db_url: str, seed: int, console: Console, day: date | None = None) -> None:
    """Recreate ``db_url``, simulate ``day`` (default 2026-11-23) with ``seed``, and report.

    The CLI passes today, so a served demo shows budgets in their current windows.

    Raises:
        ConfigurationError: ``db_url`` is not SQLite/memory, or holds data
            other than an earlier demo's.
    """
    reset_database(db_url)
    start = START if day is None else datetime.combine(day, time(8), UTC)
    clock = FakeClock(start)
    rng = random.Random(seed)
    calls = [replace(c, at=c.at + (start - START)) for c in plan_day(rng)]
    with _governors(db_url, clock) as (usd, eur):
        tally = simulate(calls, usd, eur, clock, rng)
        console.print(_summary(tally, start), markup=False)
        report_crm(usd, console)
        report_gateway(eur, console)
        report_agents(usd, console)
