"""Rendering shared by the CLI and the demo: Rich tables and human amounts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from allotment.core.budgets import Budget
from allotment.core.decisions import BudgetView, State
from allotment.core.money import MICROS, units_to_decimal
from allotment.core.usage import Meter
from allotment.store.base import UsageRow

__all__ = [
    "budgets_table",
    "format_amount",
    "format_decimal",
    "format_money",
    "make_console",
    "print_json",
    "status_table",
    "usage_json",
    "usage_table",
]

_STATE_STYLES = {
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
    """Integer micro-units as a currency amount: ``1234500`` -> ``1.2345 USD``."""
    text = format_decimal(units_to_decimal(micros, MICROS), 2)
    return f"{text} {currency}" if currency else text


def format_amount(meter: str, units: int | None, currency: str | None = None) -> str:
    """Base units of ``meter`` in human units (money for cost, seconds for audio)."""
    if units is None:
        return "-"
    kind = Meter(meter)
    if kind is Meter.COST:
        return format_money(units, currency)
    return format_decimal(units_to_decimal(units, kind.scale))


def _selector_text(budget: Budget) -> str:
    parts = [f"{dim}={','.join(values)}" for dim, values in budget.match]
    parts += [f"not {dim}={','.join(values)}" for dim, values in budget.exclude]
    return "; ".join(parts)


def budgets_table(budgets: Iterable[Budget]) -> Table:
    """Budgets with their window and limit in human units."""
    table = Table("id", "tenant", "meter", "window", "limit", "per", "selector", "mode")
    table.add_column("enabled")
    table.add_column("overrides")
    for b in budgets:
        table.add_row(
            b.id, b.tenant or "*", b.meter.value, b.window.describe(),
            format_amount(b.meter.value, b.limit, b.currency), b.per or "", _selector_text(b),
            b.mode.value, "yes" if b.enabled else "no", "yes" if b.overrides else "",
        )  # fmt: skip
    return table


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M %Z")


def status_table(
    views: Iterable[BudgetView], currency: str, *, title: str | None = None, brief: bool = False
) -> Table:
    """Where each budget stands; ``brief`` keeps budget, member, used, limit, percent, state."""
    columns = ["budget", "member", "used", "reserved", "limit", "remaining", "percent", "state"]
    if brief:
        columns = ["budget", "member", "used", "limit", "percent", "state"]
    table = Table(*columns, title=title)
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
            "state": Text(v.state.value, style=_STATE_STYLES[v.state]),
        }
        row = [cells[c] for c in columns]
        table.add_row(*row, *([] if brief else [_when(v.resets_at)]))
    return table


def usage_table(
    rows: Iterable[UsageRow], by: Sequence[str], currency: str, *, title: str | None = None
) -> Table:
    """A usage breakdown: one column per grouping dimension, then the totals."""
    table = Table(*by, title=title)
    for name in ("calls", "errors", "blocked", "input", "output", "tokens", "cost"):
        table.add_column(name, justify="right")
    for row in rows:
        t = row.totals
        numbers = (row.calls, row.errors, row.blocked, t["input_tokens"], t["output_tokens"])
        table.add_row(
            *(row.group[d] or "-" for d in by),
            *(f"{n:,}" for n in numbers),
            f"{t['input_tokens'] + t['output_tokens']:,}",
            format_money(t["cost_micros"], currency),
        )
    return table


def usage_json(row: UsageRow, currency: str) -> dict[str, Any]:
    cost = units_to_decimal(row.totals["cost_micros"], MICROS)
    return asdict(row) | {"cost": str(cost), "currency": currency}


def print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))
