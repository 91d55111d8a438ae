"""``allotment budgets``: create, list, show and delete budgets, locally or remotely."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from allotment._render import budgets_table, make_console, print_json
from allotment.cli._group import Group
from allotment.cli._input import pairs
from allotment.cli._options import ApiKey, AsJson, Db, Pairs, TenantOpt, Url
from allotment.cli._target import backend, target
from allotment.config import load_plan_specs

__all__ = ["budgets_app"]

budgets_app = typer.Typer(
    cls=Group, help="Create, list, show and delete budgets.", no_args_is_help=True
)
BudgetId = Annotated[str, typer.Argument(metavar="ID", help="Budget id.")]
#: budget ids are scoped by tenant: name it when several tenants have the id
OfTenant = Annotated[
    str | None, typer.Option("--tenant", help="The budget's tenant, when several have this id.")
]


@budgets_app.command("list")
def budgets_list(
    tenant: TenantOpt = None,
    as_json: AsJson = False,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """List budgets (all tenants unless --tenant is given)."""
    with backend(target(db, url, api_key)) as gov:
        budgets = gov.list_budgets(tenant)
    if as_json:
        print_json([b.to_spec() for b in budgets])
    else:
        make_console().print(budgets_table(budgets))


@budgets_app.command("get")
def budgets_get(
    budget_id: BudgetId, tenant: OfTenant = None, as_json: AsJson = False, db: Db = None,
    url: Url = None, api_key: ApiKey = None,
) -> None:  # fmt: skip
    """Show one budget."""
    with backend(target(db, url, api_key)) as gov:
        budget = gov.get_budget(budget_id, tenant=tenant)
    if as_json:
        print_json(budget.to_spec())
    else:
        make_console().print(budgets_table([budget]))


@budgets_app.command("set")
def budgets_set(
    budget_id: Annotated[str | None, typer.Option("--id", help="Budget id.")] = None,
    meter: Annotated[str | None, typer.Option(help="tokens, cost, requests, ...")] = None,
    window: Annotated[str | None, typer.Option(help="day, week, month, rolling:1h, ...")] = None,
    limit: Annotated[str | None, typer.Option(help="Human units: 200000, 5.00.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Owning tenant (omit: every tenant).")] = None,
    per: Annotated[str | None, typer.Option(help="Count each user/key/agent/... apart.")] = None,
    match: Pairs = None,
    exclude: Pairs = None,
    soft: Annotated[list[str] | None, typer.Option(help="Warn at this percent.")] = None,
    mode: Annotated[str | None, typer.Option(help="enforce, warn, shadow or off.")] = None,
    overrides: Annotated[
        bool, typer.Option("--overrides", help="Replace less specific budgets.")
    ] = False,
    disabled: Annotated[
        bool, typer.Option("--disabled", help="Record usage, never refuse.")
    ] = False,
    policy: Annotated[
        str | None, typer.Option(help="Warn as one with this policy's budgets.")
    ] = None,
    protected: Annotated[
        bool, typer.Option("--protected", help="Refuse to delete it until unprotected.")
    ] = False,
    credits: Annotated[
        bool,
        typer.Option("--credits", help="A credit pool: past its limit, calls draw its grants."),
    ] = False,
    name: Annotated[str | None, typer.Option()] = None,
    currency: Annotated[str | None, typer.Option(help="Currency of a cost budget.")] = None,
    file: Annotated[Path | None, typer.Option(help="YAML/TOML file of budgets.")] = None,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Create or replace a budget from flags, or every budget (and plan) in --file.

    Replacing is wholesale: fields not given take their defaults.
    """
    flags: dict[str, object] = {
        "id": budget_id, "meter": meter, "window": window, "limit": limit, "tenant": tenant,
        "per": per, "soft": soft, "mode": mode, "name": name, "currency": currency,
        "policy": policy, "match": pairs(match, "--match"), "exclude": pairs(exclude, "--exclude"),
    }  # fmt: skip
    spec = {k: v for k, v in flags.items() if v is not None}
    if file is not None and (spec or overrides or disabled or protected or credits):
        raise typer.BadParameter("cannot be combined with budget flags", param_hint="--file")
    plans = 0
    with backend(target(db, url, api_key)) as gov:
        if file is not None:
            saved = list(gov.load_budgets(file))
            plans = len(load_plan_specs(file))
        else:
            switches = {"overrides": overrides, "enabled": not disabled, "protected": protected,
                        "credits": credits}  # fmt: skip
            saved = [gov.set_budget(spec | switches)]
    with_plans = f" and {plans} plan(s) (allotment plans list)" if plans else ""
    make_console().print(budgets_table(saved), f"saved {len(saved)} budget(s){with_plans}")


@budgets_app.command("delete")
def budgets_delete(
    budget_id: BudgetId, tenant: OfTenant = None, db: Db = None, url: Url = None,
    api_key: ApiKey = None,
) -> None:  # fmt: skip
    """Delete a budget and its counters; the ledger keeps every event."""
    with backend(target(db, url, api_key)) as gov:
        gov.delete_budget(budget_id, tenant=tenant)
    make_console().print(f"deleted budget {budget_id}", markup=False)
