"""``allotment demo``: one simulated day of three systems allotment replaces.

Why a demo: it shows, on real storage and in a few seconds, that systems 1, 2
and 5 of DESIGN.md are configuration, not code — per-tenant token budgets with
soft and hard caps (a CRM), org/group/user cost policies with a user override
and bring-your-own-key calls left out (a gateway, budgets in EUR; one user on
prepaid credit that tops itself up, as system 3's customers do, paid by the
test gateway), and pooled plus per-agent token limits (an agent orchestrator).
A seeded ``random.Random`` plans a working day of calls, and a fake clock
walks through them over the twelve hours up to now (from midnight UTC when it
is not yet noon), so no event lies in the future and every call counts in
today's windows. The same seed and the same time print the same report.

The demo lives in the CLI's own database (``sqlite:///allotment.db`` unless
told otherwise), so ``allotment status --tenant port-a`` reads it. A database
that already holds the demo is kept, with its keys; ``reset=True`` simulates
afresh. A database holding anything else is never touched.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from rich.console import Console

from allotment import _demo_db
from allotment._demo_db import DemoState, demo_file, not_a_demo, reset_database
from allotment._render import format_money, status_table, usage_table
from allotment.core.credits import GrantKind
from allotment.core.decisions import BudgetView
from allotment.errors import NotFoundError
from allotment.governor import Governor
from allotment.payments import TestGateway
from allotment.pricing.static import ModelRate, StaticPricer

__all__ = ["demo_file", "demo_state", "run_demo", "simulated_span"]

#: the planned working day; the calls are then spread over the span up to now
START = datetime(2026, 11, 23, 8, tzinfo=UTC)
DAY_SECONDS = 12 * 3600
ERROR_RATE = 0.04

_NOT_BYOK = {"tags.byok": "true"}
#: a credit pool (system 3): a month's allowance, a welcome grant, then auto top-ups
CREDIT_POOL = "globex-erin-credits"
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
    {"id": CREDIT_POOL, "name": "erin's prepaid credit", "tenant": "globex", "meter": "cost",
     "window": "month", "per": "user", "match": {"user": "erin"}, "limit": "0.05",
     "exclude": _NOT_BYOK, "credits": True,
     "auto_topup": {"threshold": "0.04", "amount": "0.05", "monthly_cap": "0.10"}},
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

#: Made-up USD prices per million tokens. The ledger is in USD, like every
#: deployment's, one currency; the gateway's budgets are kept in EUR through a rate.
USD_RATES = {
    "gpt-4o": ModelRate(Decimal("2.50"), Decimal("10.00")),
    "gpt-4o-mini": ModelRate(Decimal("0.15"), Decimal("0.60")),
    "claude-3-5-haiku": ModelRate(Decimal("0.80"), Decimal("4.00")),
    "claude-3-5-sonnet": ModelRate(Decimal("3.00"), Decimal("15.00")),
}
#: 1 USD in EUR, from before any demo day
EUR_PER_USD = ("0.92", datetime(2026, 1, 1, tzinfo=UTC))
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


def simulated_span(now: datetime) -> tuple[datetime, datetime]:
    """The stretch the demo's day is played over: the 12 hours up to ``now``, from
    midnight UTC at the earliest, so every call lies in the past and in today's windows."""
    now = now.astimezone(UTC)
    midnight = datetime.combine(now.date(), time(0), UTC)
    return max(midnight, now - timedelta(seconds=DAY_SECONDS)), now


def spread(calls: Iterable[PlannedCall], start: datetime, end: datetime) -> list[PlannedCall]:
    """The planned day's calls moved onto ``[start, end)``, in the same order and proportions."""
    scale = (end - start) / timedelta(seconds=DAY_SECONDS)
    return [replace(c, at=start + (c.at - START) * scale) for c in calls]


# --- running ------------------------------------------------------------------------


def _actual(rng: random.Random, call: PlannedCall, failed: bool) -> dict[str, int]:
    """Usually less than the estimate; one call in ten underestimated its prompt."""
    prompt = call.prompt_tokens
    if rng.random() < 0.1:
        prompt = int(prompt * rng.uniform(1.05, 1.25))
    output = 0 if failed else int(call.max_tokens * rng.uniform(0.3, 1.0))
    return {"input_tokens": prompt, "output_tokens": output}


def simulate(
    calls: Iterable[PlannedCall], gov: Governor, clock: FakeClock, rng: random.Random
) -> Tally:
    """Authorize each call with its estimate, then commit what it used (or count the refusal)."""
    tally = Tally()
    for n, call in enumerate(calls):
        clock.now = call.at
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
        result = gov.commit(request_id, used, status="error" if failed else "success")
        if result.topups:  # paid at once, at this call's time
            gov.run_topups()
    return tally


# --- the database and its governors ---------------------------------------------------


def demo_state(url: str) -> DemoState:
    """``fresh`` (nothing to keep), ``demo`` (an earlier demo) or ``foreign`` (other data)."""
    return _demo_db.demo_state(url, DEMO_BUDGET_IDS)


def _create_budgets(gov: Governor, start: datetime) -> None:
    rate, since = EUR_PER_USD
    gov.set_rate("USD", "EUR", rate, effective_from=since)  # the gateway's budgets are in EUR
    for spec in (*CRM_BUDGETS, *AGENT_BUDGETS, *GATEWAY_BUDGETS):
        gov.set_budget(spec)
    gov.add_grant(CREDIT_POOL, "0.05", tenant="globex", member="erin", kind="promotional",
                  effective_at=start, grant_id="welcome")  # fmt: skip


# --- reporting ----------------------------------------------------------------------


def _views(gov: Governor, subjects: Iterable[dict[str, Any]]) -> list[BudgetView]:
    """Status of several members in one list; pooled budgets appear once."""
    seen: dict[tuple[str, str], BudgetView] = {}
    for subject in subjects:
        for view in gov.status(subject):
            seen.setdefault((view.budget_id, view.member), view)
    return list(seen.values())


def _summary(tally: Tally, start: datetime, end: datetime) -> str:
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(tally.refused.items()))
    refused = sum(tally.refused.values())
    total = tally.allowed + refused
    return (
        f"{total} calls on {start:%Y-%m-%d} {start:%H:%M}-{end:%H:%M} UTC: "
        f"{tally.allowed} allowed, {refused} refused ({reasons or 'none'}), {tally.errors} errors"
    )


def report_crm(gov: Governor, console: Console) -> None:
    """System 1: both ports' budgets and port-a's usage per feature."""
    console.rule("System 1 - CRM with per-tenant token budgets")
    views = _views(gov, ({"tenant": t} for t in ("port-a", "port-b")))
    console.print(status_table(views, gov.currency, title="port-a, port-b", brief=True))
    rows = gov.usage("port-a", ["feature"])
    console.print(
        usage_table(rows, ["feature"], gov.currency, title="port-a usage by feature", brief=True)
    )


def report_gateway(gov: Governor, console: Console) -> None:
    """System 2: every user's policies (alice's override in force) and spend per user."""
    console.rule("System 2 - gateway with cost policies (budgets in EUR, ledger in USD)")
    subjects = [
        {"tenant": "globex", "user": user, "groups": list(groups)}
        for user, (groups, *_) in GATEWAY_USERS.items()
    ]
    views = _views(gov, subjects)
    console.print(status_table(views, gov.currency, title="globex policies", brief=True))
    rows = gov.usage("globex", ["user"])
    console.print(
        usage_table(rows, ["user"], gov.currency, title="globex spend per user", brief=True)
    )
    line = _credit_line(gov)
    if line is not None:
        console.print(line, markup=False)


def _credit_line(gov: Governor) -> str | None:
    """erin's prepaid credit: what is left, the auto top-ups paid, why none is buying
    (None: a demo kept from before it had the pool)."""
    try:
        pool = gov.pool(CREDIT_POOL, tenant="globex", member="erin")
    except NotFoundError:
        return None
    status, _ = gov.topup_status(CREDIT_POOL, tenant="globex", member="erin")
    paid = sum(1 for row in pool.grants if row.grant.kind is GrantKind.TOP_UP)
    left = format_money(pool.available - pool.debt, pool.budget.currency)
    return (f"{CREDIT_POOL} (erin's prepaid credit): {left} left, {paid} auto top-ups paid "
            f"by the test gateway; auto top-up status: {status or 'active'}")  # fmt: skip


def report_agents(gov: Governor, console: Console) -> None:
    """System 5: the shared pool, each agent's limit, and usage per agent."""
    console.rule("System 5 - agent orchestrator")
    views = _views(gov, ({"tenant": "orchestrator", "agent": a} for a in AGENTS))
    console.print(status_table(views, gov.currency, title="orchestrator", brief=True))
    rows = gov.usage("orchestrator", ["agent"])
    title = "orchestrator usage by agent"
    console.print(usage_table(rows, ["agent"], gov.currency, title=title, brief=True))


def run_demo(
    db_url: str,
    seed: int,
    console: Console,
    now: datetime | None = None,
    *,
    reset: bool = False,
) -> bool:
    """Simulate the day up to ``now`` on ``db_url`` with ``seed`` and report; True if it did.

    A database that already holds the demo is kept and only reported on
    (``reset=True`` deletes and simulates it afresh). ``now`` defaults to
    2026-11-23 20:00 UTC, a whole working day; the CLI passes the current time.

    Raises:
        ConfigurationError: ``db_url`` is not SQLite/memory, or holds data
            other than the demo's.
    """
    end = START + timedelta(seconds=DAY_SECONDS) if now is None else now.astimezone(UTC)
    state = demo_state(db_url)
    if state == "foreign":
        raise not_a_demo(demo_file(db_url), "it holds data of its own")
    if reset:
        reset_database(db_url, DEMO_BUDGET_IDS)
    simulate_now = reset or state == "fresh"
    clock = FakeClock(end)
    pricer = StaticPricer(USD_RATES)
    gateway = TestGateway()  # pays erin's auto top-ups
    with Governor(db_url, pricer=pricer, clock=clock, gateway=gateway, topup_worker=False) as gov:
        if simulate_now:
            start, end = simulated_span(end)
            rng = random.Random(seed)
            calls = spread(plan_day(rng), start, end)
            _create_budgets(gov, start)
            tally = simulate(calls, gov, clock, rng)
            clock.now = end
            console.print(_summary(tally, start, end), markup=False)
        else:
            console.print(
                f"kept the demo already in {demo_file(db_url)} (--reset simulates it afresh)",
                markup=False,
            )
        report_crm(gov, console)
        report_gateway(gov, console)
        report_agents(gov, console)
    return simulate_now
