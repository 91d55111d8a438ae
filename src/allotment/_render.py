"""Rendering shared by the CLI and the demo: Rich tables and human amounts.

The tables take what the Governor answers and what ``allotment.client``
answers alike (the protocols below), so each CLI command prints the same
whether it ran on the store or through the service. Tables show amounts in
human units with their currency or unit (``1.20 EUR``, ``12,345 tokens``,
``3.5 s``); ``--json`` prints what the HTTP API answers (integers in base
units, named in ``unit``, with ``display``; see ``allotment.core.units``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from allotment.core.budgets import Budget
from allotment.core.decisions import BudgetView, Decision, State
from allotment.core.money import MICROS, units_to_decimal
from allotment.core.routes import Route
from allotment.core.units import UNITS, UsageLine, decimals, usage_row_json
from allotment.core.usage import Meter

if TYPE_CHECKING:
    from allotment.replay import ReplayReport

__all__ = [
    "DecisionLike",
    "UsageLine",
    "budgets_table",
    "decision_json",
    "decision_lines",
    "format_amount",
    "format_decimal",
    "format_instant",
    "format_money",
    "make_console",
    "print_json",
    "replay_table",
    "status_json",
    "status_table",
    "to_budget",
    "usage_json",
    "usage_table",
]


class StatusRow(Protocol):
    """One budget as it stands: ``BudgetView``, or the client's ``RemoteBudgetView``."""

    @property
    def budget_id(self) -> str: ...
    @property
    def member(self) -> str | None: ...
    @property
    def meter(self) -> str: ...
    @property
    def used(self) -> int | None: ...
    @property
    def reserved(self) -> int | None: ...
    @property
    def limit(self) -> int | None: ...
    @property
    def remaining(self) -> int | None: ...
    @property
    def percent(self) -> Decimal | str | None: ...
    @property
    def state(self) -> str: ...
    @property
    def resets_at(self) -> datetime | str | None: ...
    @property
    def currency(self) -> str | None: ...
    def to_dict(self) -> dict[str, Any]: ...


class SpecLike(Protocol):
    """A budget that can say its spec: ``Budget``, or the client's ``RemoteBudget``."""

    def to_spec(self) -> dict[str, Any]: ...


class RefusalLike(Protocol):
    """Why a budget refused: ``Refusal``, or the client's ``RemoteRefusal``."""

    @property
    def budget_id(self) -> str | None: ...
    @property
    def reason(self) -> str: ...


class WarningLike(Protocol):
    """A warning on a decision: ``Warning``, or the client's ``RemoteWarning``."""

    @property
    def budget_id(self) -> str | None: ...
    @property
    def code(self) -> str: ...


class SkippedLike(Protocol):
    """A route candidate passed over: ``Skipped`` (the client's are its JSON dicts)."""

    def to_dict(self) -> dict[str, Any]: ...


class DecisionLike(Protocol):
    """An authorization's answer: ``Decision``, or the client's ``RemoteDecision`` (whose
    route and skipped candidates are the JSON dicts ``Route`` and ``Skipped`` write)."""

    @property
    def request_id(self) -> str: ...
    @property
    def allowed(self) -> bool: ...
    @property
    def refusals(self) -> Sequence[RefusalLike]: ...
    @property
    def warnings(self) -> Sequence[WarningLike]: ...
    @property
    def budgets(self) -> Sequence[StatusRow]: ...
    @property
    def expires_at(self) -> datetime | str | None: ...
    @property
    def retry_at(self) -> datetime | str | None: ...
    @property
    def replayed(self) -> bool: ...
    @property
    def degraded(self) -> bool: ...
    @property
    def route(self) -> Route | Mapping[str, Any] | None: ...
    @property
    def skipped(self) -> Sequence[SkippedLike | Mapping[str, Any]]: ...
    def to_dict(self) -> dict[str, Any]: ...


_STATE_STYLES: dict[str, str] = {
    State.WITHIN_BUDGET: "green",
    State.APPROACHING_LIMIT: "yellow",
    State.AT_LIMIT: "dark_orange",
    State.EXCEEDED: "bold red",
}


def make_console(*, stderr: bool = False) -> Console:
    """A Rich console; when output is piped or captured it is made wide enough
    that tables are not squeezed into 80 columns and words stay whole."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 160)
    return console


def format_decimal(value: Decimal, min_places: int = 0) -> str:
    """``value`` with thousands separators and no trailing zeros beyond ``min_places``."""
    whole, _, fraction = f"{value:,f}".partition(".")
    fraction = fraction.rstrip("0").ljust(min_places, "0")
    return f"{whole}.{fraction}" if fraction else whole


def format_money(micros: int, currency: str | None = None) -> str:
    """Integer micro-units as a currency amount, with at least the currency's usual
    decimals: ``1234500`` -> ``1.2345 USD``, ``1200000`` -> ``1.20 EUR``."""
    text = format_decimal(units_to_decimal(micros, MICROS), decimals(currency))
    return f"{text} {currency}" if currency else text


#: how a table labels an amount of each base unit (cost is labelled by its currency)
_LABELS = {
    "tokens": "tokens",
    "ms": "s",
    "requests": "requests",
    "credits": "credits",
    "leases": "leases",
}


def format_amount(meter: str, units: int | None, currency: str | None = None) -> str:
    """Base units of ``meter`` in human units with their unit: ``1.20 EUR``,
    ``12,345 tokens``, ``3.5 s``."""
    if units is None:
        return "-"
    kind = Meter(meter)
    if kind is Meter.COST:
        return format_money(units, currency)
    return f"{format_decimal(units_to_decimal(units, kind.scale))} {_LABELS[UNITS[kind]]}"


def _selector_text(budget: Budget) -> str:
    parts = [f"{dim}={','.join(values)}" for dim, values in budget.match]
    parts += [f"not {dim}={','.join(values)}" for dim, values in budget.exclude]
    return "; ".join(parts)


def to_budget(budget: Budget | SpecLike) -> Budget:
    """A ``Budget`` (the service answers budgets in spec form)."""
    return budget if isinstance(budget, Budget) else Budget.from_spec(budget.to_spec())


def budgets_table(budgets: Iterable[Budget | SpecLike]) -> Table:
    """Budgets with their window and limit in human units."""
    table = Table("id", "tenant", "meter", "window", "limit", "per", "selector", "mode")
    table.add_column("enabled")
    table.add_column("overrides")
    for b in map(to_budget, budgets):
        table.add_row(
            b.id, b.tenant or "*", b.meter.value, b.window.describe(),
            format_amount(b.meter.value, b.limit, b.currency), b.per or "", _selector_text(b),
            b.mode.value, "yes" if b.enabled else "no", "yes" if b.overrides else "",
        )  # fmt: skip
    return table


def _when(value: datetime | str | None) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M %Z")


def _table(*columns: str, title: str | None, brief: bool) -> Table:
    """A table; ``brief`` ones (the demo's) have no outer border, to stay short."""
    if brief:
        return Table(*columns, title=title, box=box.SIMPLE_HEAD, show_edge=False)
    return Table(*columns, title=title)


def status_json(views: Iterable[StatusRow], currency: str) -> list[dict[str, Any]]:
    """Budget views as ``/v1/status`` answers them; ``currency`` is the ledger's, named
    by the store's cost budgets that have none of their own (the service's name it)."""
    return [v.to_dict(currency=currency) if isinstance(v, BudgetView) else v.to_dict()
            for v in views]  # fmt: skip


def status_table(
    views: Iterable[StatusRow], currency: str, *, title: str | None = None, brief: bool = False
) -> Table:
    """Where each budget stands; ``brief`` keeps budget, member, used, limit, percent, state."""
    columns = ["budget", "member", "used", "reserved", "limit", "remaining", "percent", "state"]
    if brief:
        columns = ["budget", "member", "used", "limit", "percent", "state"]
    table = _table(*columns, title=title, brief=brief)
    if not brief:
        table.add_column("resets_at")
    for v in views:
        money = v.currency or currency
        cells: dict[str, str | Text] = {
            "budget": v.budget_id,
            "member": v.member or "(all)",
            "used": format_amount(v.meter, v.used, money),
            "reserved": format_amount(v.meter, v.reserved, money),
            "limit": format_amount(v.meter, v.limit, money),
            "remaining": format_amount(v.meter, v.remaining, money),
            "percent": "-" if v.percent is None else f"{v.percent}%",
            "state": Text(str(v.state), style=_STATE_STYLES.get(v.state, "")),
        }
        row = [cells[c] for c in columns]
        table.add_row(*row, *([] if brief else [_when(v.resets_at)]))
    return table


def usage_table(
    rows: Iterable[UsageLine],
    by: Sequence[str],
    currency: str,
    *,
    title: str | None = None,
    brief: bool = False,
) -> Table:
    """A usage breakdown: one column per grouping dimension, then the totals."""
    table = _table(*by, title=title, brief=brief)
    for name in ("calls", "errors", "blocked", "input", "output", "tokens", "cost"):
        table.add_column(name, justify="right")
    for row in rows:
        t = row.totals
        numbers = (row.calls, row.errors, row.blocked, t["input_tokens"], t["output_tokens"])
        table.add_row(
            *(row.group[d] or "-" for d in by),
            *(f"{n:,}" for n in numbers),
            f"{t['input_tokens'] + t['output_tokens']:,}",
            format_money(t["cost_micros"], _currency_of(row, currency)),
        )
    return table


def replay_table(report: ReplayReport) -> Table:
    """``allotment replay``: each day and tenant, what each policy would have refused."""
    table = _table("day", "tenant", title="replayed: current budgets vs proposed", brief=False)
    for name in ("calls", "spend", "refused now", "spend refused now", "refused proposed",
                 "spend avoided"):  # fmt: skip
        table.add_column(name, justify="right")
    money = report.currency
    for r in report.rows:
        table.add_row(
            r.day.isoformat(), r.tenant, f"{r.calls:,}", format_money(r.spend_micros, money),
            f"{r.current_refused:,}", format_money(r.current_refused_micros, money),
            f"{r.proposed_refused:,}", format_money(r.proposed_refused_micros, money),
        )  # fmt: skip
    return table


def usage_json(row: UsageLine, currency: str) -> dict[str, Any]:
    """A usage row as the CLI's ``--json`` prints it: as ``/v1/usage`` answers it.

    ``currency`` is the ledger's (a row from the service names its own).
    """
    return usage_row_json(row, _currency_of(row, currency))


def _currency_of(row: UsageLine, currency: str) -> str:
    """The currency of a row's costs: the service's rows name it (so an EUR ledger
    is never labelled with the CLI's default, USD); the store's rows are the ledger's."""
    named: str | None = getattr(row, "currency", None)
    return named or currency


def decision_json(decision: DecisionLike, currency: str) -> dict[str, Any]:
    """A decision as ``/v1/authorize`` answers it; ``currency`` is the ledger's (see
    ``status_json``)."""
    if isinstance(decision, Decision):
        return decision.to_dict(currency=currency)
    return decision.to_dict()


def decision_lines(decision: DecisionLike) -> list[Text]:
    """An authorization in a few lines: allowed or refused, on which route, the candidates
    passed over and why, when to retry, and its warnings (the budgets are a table)."""
    lines = [_verdict(decision)]
    skipped = [s if isinstance(s, Mapping) else s.to_dict() for s in decision.skipped]
    for s in skipped:
        line = Text("skipped", style="yellow")
        line.append(f" {_label(s)}: {_why(s['refusals'])}{_retry(s.get('retry_at'))}")
        lines.append(line)
    if not decision.allowed and not skipped:
        lines.append(Text(f"refused by {_why(decision.refusals)}"))
    if decision.retry_at is not None:
        lines.append(Text(f"retry at {format_instant(decision.retry_at)}"))
    lines += [Text(f"warning {w.code}" + _on(w.budget_id)) for w in decision.warnings]
    return lines


def _on(budget_id: str | None) -> str:
    return "" if budget_id is None else f" on {budget_id}"


def _verdict(decision: DecisionLike) -> Text:
    verdict = ("allowed", "green") if decision.allowed else ("refused", "bold red")
    line = Text.assemble(verdict, f" request {decision.request_id}")
    if decision.route is not None:
        line.append(f" on {_label(decision.route)}")
    if decision.allowed and decision.expires_at is not None:
        line.append(f", held until {format_instant(decision.expires_at)}")
    if decision.replayed:
        line.append(" (replayed: already granted)")
    if decision.degraded:
        line.append(" (degraded: the store was unreachable)")
    return line


def _label(route: Route | Mapping[str, Any]) -> str:
    """``provider/model@backend`` of a ``Route`` or of its JSON form."""
    if isinstance(route, Route):
        return route.label
    return Route(route["provider"], route["model"], route.get("backend")).label


def _why(refusals: Iterable[RefusalLike | Mapping[str, Any]]) -> str:
    """``budget reason; budget reason`` (a refusal no budget made is its reason alone)."""
    parts = []
    for r in refusals:
        if isinstance(r, Mapping):
            budget, reason = r.get("budget_id"), str(r["reason"])
        else:
            budget, reason = r.budget_id, str(r.reason)
        parts.append(reason if budget is None else f"{budget} {reason}")
    return "; ".join(parts) or "-"


def _retry(value: datetime | str | None) -> str:
    return "" if value is None else f" (retry at {format_instant(value)})"


def format_instant(value: datetime | str | None) -> str:
    """A time to the second, in its own zone (UTC for the store's and the service's)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S %Z")


def print_json(data: object) -> None:
    """``data`` as indented JSON on stdout."""
    typer.echo(json.dumps(data, indent=2, default=str))
