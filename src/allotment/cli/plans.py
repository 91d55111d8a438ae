"""``allotment plans``: plans (tiers) and which plan each member is on, locally or remotely.

A plan is a named template of budgets that each member of its ``per``
dimension gets (``core`` = 100 credits for life per install, ``pro`` = 1,000
a month). ``--json`` prints what the HTTP API answers (the wire form of
``allotment._client_base``), alike on the store and through the service.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from allotment._answers import RemotePlan
from allotment._client_base import plan_json
from allotment._render import format_amount, make_console, print_json
from allotment.access import in_scope
from allotment.cli._group import Group
from allotment.cli._options import ApiKey, AsJson, Db, Url
from allotment.cli._target import Target, backend, target
from allotment.client import Client
from allotment.config import load_plan_file
from allotment.core.plans import Plan
from allotment.governor import Governor

__all__ = ["plans_app"]

plans_app = typer.Typer(
    cls=Group, help="Plans (tiers), and which plan each member is on.", no_args_is_help=True
)
PlanId = Annotated[str, typer.Argument(metavar="ID", help="The plan's id.")]
OfTenant = Annotated[
    str | None,
    typer.Option("--tenant", help="The plan's tenant (else the deployment-wide plan)."),
]
TenantArg = Annotated[str, typer.Argument(metavar="TENANT", help="The member's tenant.")]
MemberArg = Annotated[
    str, typer.Argument(metavar="MEMBER", help="A value of the plans' per dimension: the install.")
]


@plans_app.command("set")
def plans_set(
    file: Annotated[
        Path | None, typer.Option(help="YAML/TOML file: one plan, or plans: [...].")
    ] = None,
    spec: Annotated[
        str | None, typer.Option("--json", help='The plan as JSON: \'{"id": "pro", ...}\'.')
    ] = None,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Create or replace plans (each change raises a plan's version). Several plans are
    checked together before any is written."""
    specs = _given(file, spec)
    with _opened(target(db, url, api_key)) as gov:
        if len(specs) == 1:
            saved = [gov.set_plan(specs[0])]
        else:
            gov.apply_config([], (), specs)
            saved = [gov.get_plan(s["id"], tenant=s.get("tenant")) for s in specs]
    console = make_console()
    console.print(plans_table([_wire(p) for p in saved]))
    versions = ", ".join(f"{p.id} (version {p.version})" for p in saved)
    console.print(f"saved {len(saved)} plan(s): {versions}", markup=False)


@plans_app.command("list")
def plans_list(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="This tenant's and the deployment-wide.")
    ] = None,
    as_json: AsJson = False,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """List plans (every tenant's unless --tenant is given)."""
    with _opened(target(db, url, api_key)) as gov:
        found = gov.list_plans(tenant) if isinstance(gov, Client) else gov.list_plans()
        plans = [_wire(p) for p in found if in_scope(p, tenant)]
    if as_json:
        print_json(plans)
    else:
        make_console().print(plans_table(plans))


@plans_app.command("show")
def plans_show(
    plan_id: PlanId,
    tenant: OfTenant = None,
    as_json: AsJson = False,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Show one plan: the tenant's own, else the deployment-wide one."""
    with _opened(target(db, url, api_key)) as gov:
        plan = _wire(gov.get_plan(plan_id, tenant=tenant))
    if as_json:
        print_json(plan)
    else:
        make_console().print(plans_table([plan]))


@plans_app.command("delete")
def plans_delete(
    plan_id: PlanId, tenant: OfTenant = None, db: Db = None, url: Url = None,
    api_key: ApiKey = None,
) -> None:  # fmt: skip
    """Delete a plan; its members are then on the tenant's default plan, if any."""
    with _opened(target(db, url, api_key)) as gov:
        gov.delete_plan(plan_id, tenant=tenant)
    make_console().print(f"deleted plan {plan_id}", markup=False)


@plans_app.command("assign")
def plans_assign(
    tenant: TenantArg,
    member: MemberArg,
    plan: Annotated[str, typer.Argument(metavar="PLAN", help="The plan's id.")],
    reset: Annotated[
        bool,
        typer.Option("--reset", help="Start its windowed plan budgets afresh (default: carry)."),
    ] = False,
    as_json: AsJson = False,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Put a member on a plan from its next request; what it used this window carries
    over unless --reset. Lifetime quotas survive either."""
    with _opened(target(db, url, api_key)) as gov:
        assigned = gov.assign_plan(tenant, member, plan, usage="reset" if reset else "carry")
    if as_json:
        print_json(assigned.to_dict())
    else:
        make_console().print(_assignment_line(assigned.to_dict()), markup=False)


@plans_app.command("of")
def plans_of(
    tenant: TenantArg,
    member: MemberArg,
    as_json: AsJson = False,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Which plan a member is assigned (none: the tenant's default plan applies)."""
    with _opened(target(db, url, api_key)) as gov:
        assigned = gov.plan_of(tenant, member)
    data = None if assigned is None else assigned.to_dict()
    if as_json:
        print_json(data)
    elif data is None:
        text = f"{member} of {tenant} has no plan assigned: the tenant's default plan applies"
        make_console().print(text + " (if it has one)", markup=False)
    else:
        make_console().print(_assignment_line(data), markup=False)


# --- input and output ---------------------------------------------------------------------


def _given(file: Path | None, spec: str | None) -> list[Mapping[str, Any]]:
    """The plan specs of ``--file`` or ``--json`` (exactly one of them)."""
    if (file is None) == (spec is None):
        raise typer.BadParameter("give --file or --json (one of them)", param_hint="--file")
    if file is not None:
        return load_plan_file(file)
    assert spec is not None
    try:
        data = json.loads(spec)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--json") from None
    plans = data if isinstance(data, list) else [data]
    if not plans or not all(isinstance(p, dict) for p in plans):
        raise typer.BadParameter("a plan object, or a list of them", param_hint="--json")
    return plans


@contextmanager
def _opened(where: Target) -> Iterator[Governor | Client]:
    """The Governor on the store or the client of the service (no prices needed)."""
    with backend(where, priced=False) as gov:
        assert isinstance(gov, Governor | Client)
        yield gov


def _wire(plan: Plan | RemotePlan) -> dict[str, Any]:
    """A plan as the service answers it."""
    return plan.to_dict() if isinstance(plan, RemotePlan) else plan_json(plan)


def plans_table(plans: Sequence[Mapping[str, Any]]) -> Table:
    """Plans (in their wire form), a row per budget template."""
    table = Table("plan", "tenant", "per", "default", "version", "budget", "meter", "window",
                  "limit", title="plans")  # fmt: skip
    for data in plans:
        plan = Plan.from_spec({k: v for k, v in data.items() if k != "key"})
        head = [plan.id, plan.tenant or "*", plan.per, "yes" if plan.default else "",
                str(plan.version)]  # fmt: skip
        for b in plan.budgets or [None]:
            if b is None:
                table.add_row(*head, "-", "", "", "")
                continue
            limit = (
                "unlimited"
                if b.limit is None
                else format_amount(b.meter.value, b.limit, b.currency)
            )
            table.add_row(*head, b.id, b.meter.value, b.window.describe(), limit)
            head = ["", "", "", "", ""]
    return table


def _assignment_line(data: Mapping[str, Any]) -> str:
    epoch = f", reset {data['epoch']} time(s)" if data["epoch"] else ""
    return (f"{data['member']} of {data['tenant']} is on plan {data['plan']} "
            f"(assigned {data['assigned_at']}, usage {data['usage']}{epoch})")  # fmt: skip
