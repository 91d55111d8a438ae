"""``allotment credits``: a credit pool's grants, balances, auto top-up and ledger, locally
or remotely.

A pool is a budget with ``credits: true`` (``allotment budgets set … --credits``).
Amounts are given in human units of its meter, as a budget's ``--limit`` is.
Every command prints the same on the store and through the service: ``--json``
is what the HTTP API answers (the wire form of ``allotment._client_base``),
and the tables are drawn from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from allotment._client_base import RemoteGrant, credit_entry_json, grant_json, pool_answer
from allotment._render import format_amount, make_console, print_json
from allotment.cli._group import Group
from allotment.cli._input import instant, pairs
from allotment.cli._options import ApiKey, AsJson, Db, Url
from allotment.cli._target import Target, backend, target
from allotment.client import Client
from allotment.core.credits import Grant
from allotment.governor import Governor

__all__ = ["credits_app"]

credits_app = typer.Typer(
    cls=Group,
    help="Credit pools: grants, balances, auto top-up and the credit ledger.",
    no_args_is_help=True,
)
Pool = Annotated[str, typer.Argument(metavar="POOL", help="The pool: its budget's id.")]
OfTenant = Annotated[
    str | None, typer.Option("--tenant", help="The pool's tenant, when several have this id.")
]
Member = Annotated[
    str, typer.Option("--member", help="The member of a pool counted per user, install, ...")
]
#: the meter whose amounts a unit counts, for ``format_amount``
_METERS = {"tokens": "tokens", "micros": "cost", "ms": "audio_seconds", "requests": "requests",
           "credits": "credits"}  # fmt: skip


@credits_app.command("grant")
def credits_grant(
    pool: Pool,
    amount: Annotated[
        str, typer.Argument(metavar="AMOUNT", help="Human units: 12.50 (a USD pool), 100.")
    ],
    tenant: OfTenant = None,
    member: Member = "",
    kind: Annotated[
        str, typer.Option(help="purchase, promotional, top_up or adjustment.")
    ] = "purchase",
    priority: Annotated[int, typer.Option(help="Lower burns first.")] = 0,
    effective_at: Annotated[
        str | None, typer.Option("--effective-at", help="Counts from (ISO; default now).")
    ] = None,
    expires_at: Annotated[
        str | None, typer.Option("--expires-at", help="Counts until (ISO; default never).")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="A payment id: adding it again changes nothing."),
    ] = None,
    grant_id: Annotated[str | None, typer.Option("--id", help="The grant's id.")] = None,
    meta: Annotated[list[str] | None, typer.Option(help="name=value; repeatable.")] = None,
    as_json: AsJson = False,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Add a grant to a pool (it repays the member's debt first)."""
    metadata = {k: v[-1] for k, v in (pairs(meta, "--meta") or {}).items()}
    start, end = instant(effective_at, "--effective-at"), instant(expires_at, "--expires-at")
    with _opened(target(db, url, api_key)) as gov:
        grant, added = gov.add_grant(
            pool, amount, tenant=tenant, member=member, kind=kind, priority=priority,
            effective_at=start, expires_at=end, idempotency_key=idempotency_key,
            metadata=metadata, grant_id=grant_id,
        )  # fmt: skip
        data = _wire_grant(gov, grant, pool, tenant)
    if as_json:
        print_json(data | {"replayed": not added})
        return
    what = "added" if added else "already added (nothing changed):"
    text = f"{what} grant {data['id']} of {_amount(data, data['amount'])} to pool {pool}"
    make_console().print(text, markup=False)


@credits_app.command("void")
def credits_void(
    pool: Pool,
    grant_id: Annotated[str, typer.Argument(metavar="GRANT_ID", help="The grant.")],
    tenant: OfTenant = None,
    member: Member = "",
    as_json: AsJson = False,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Void a grant: what it has left is gone (calls holding some keep their hold)."""
    with _opened(target(db, url, api_key)) as gov:
        voided = gov.void_grant(pool, grant_id, tenant=tenant, member=member)
        data = _wire_grant(gov, voided, pool, tenant)
    if as_json:
        print_json(data)
    else:
        make_console().print(f"voided grant {grant_id} of pool {pool}", markup=False)


@credits_app.command("show")
def credits_show(
    pool: Pool,
    tenant: OfTenant = None,
    member: Member = "",
    as_json: AsJson = False,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """A member's grants in burn order, with what each has left, the total and the debt;
    the pool's auto top-up, its status and the latest top-up."""
    with _opened(target(db, url, api_key)) as gov:
        if isinstance(gov, Client):
            data = gov.pool(pool, tenant=tenant, member=member).to_dict()
        else:
            data = pool_answer(gov, pool, tenant, member)
    if as_json:
        print_json(data)
        return
    console = make_console()
    console.print(_pool_table(data))
    if data["auto_topup"] is not None:
        console.print(_auto_topup_line(data, data["auto_topup"]), markup=False, soft_wrap=True)


@credits_app.command("resume")
def credits_resume(
    pool: Pool,
    tenant: OfTenant = None,
    member: Member = "",
    as_json: AsJson = False,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Re-enable a member's auto top-up after a failed payment."""
    with _opened(target(db, url, api_key)) as gov:
        resumed = gov.resume_topups(pool, tenant=tenant, member=member)
    if as_json:
        print_json({"resumed": resumed})
        return
    whose = f"pool {pool}" + (f" member {member}" if member else "")
    if resumed:
        text = f"resumed auto top-up of {whose}"
    else:
        text = f"auto top-up of {whose} was not paused: nothing changed"
    make_console().print(text, markup=False)


@credits_app.command("ledger")
def credits_ledger(
    pool: Pool,
    tenant: OfTenant = None,
    member: Annotated[str | None, typer.Option(help="Only this member's entries.")] = None,
    after_id: Annotated[int, typer.Option("--after-id", help="Entries after this id.")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many entries (1-1000).")] = 100,
    as_json: AsJson = False,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """The pool's credit ledger, oldest first, each entry with the balance after it."""
    with _opened(target(db, url, api_key)) as gov:
        if isinstance(gov, Client):
            found = gov.credit_ledger(
                pool, tenant=tenant, member=member, after_id=after_id, limit=limit
            )
            entries = [e.to_dict() for e in found]
        else:
            entries = _entries(gov, pool, tenant, member, after_id, limit)
    if as_json:
        print_json(entries)
    else:
        make_console().print(_ledger_table(entries, pool))


# --- local answers in the wire form -------------------------------------------------------


@contextmanager
def _opened(where: Target) -> Iterator[Governor | Client]:
    """The Governor on the store or the client of the service (their answers differ in
    form: the client's are the wire form already)."""
    with backend(where, priced=False) as gov:
        assert isinstance(gov, Governor | Client)
        yield gov


def _wire_grant(
    gov: Governor | Client, grant: Grant | RemoteGrant, pool: str, tenant: str | None
) -> dict[str, Any]:
    if isinstance(grant, RemoteGrant):
        return grant.to_dict()
    assert isinstance(gov, Governor)
    return grant_json(grant, gov.get_pool(pool, tenant=tenant), gov.currency)


def _entries(
    gov: Governor, pool: str, tenant: str | None, member: str | None, after_id: int, limit: int
) -> list[dict[str, Any]]:
    page = gov.credit_ledger(pool, tenant=tenant, member=member, after_id=after_id, limit=limit)
    budget = gov.get_pool(pool, tenant=tenant)
    return [credit_entry_json(e, budget, gov.currency) for e in page]


# --- tables -------------------------------------------------------------------------------


def _amount(named: dict[str, Any], units: int) -> str:
    """``units`` of the unit ``named`` names, for people: ``12.50 USD``, ``1,000 tokens``."""
    return format_amount(_METERS[named["unit"]], units, named["currency"])


def _when(iso: str | None) -> str:
    """An ISO 8601 time to the minute, for a table."""
    return "-" if iso is None else datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M %Z")


def _state(grant: dict[str, Any]) -> str:
    if grant["voided_at"]:
        return "voided"
    return "active" if grant["available"] else "used up or ended"


def _pool_table(pool: dict[str, Any]) -> Table:
    member = f" member {pool['member']}" if pool["member"] else ""
    caption = (f"available {_amount(pool, pool['available'])}, "
               f"debt {_amount(pool, pool['debt'])}")  # fmt: skip
    table = Table("grant", "kind", "priority", "effective_at", "expires_at", "amount", "used",
                  "reserved", "available", "state", title=f"pool {pool['pool']}{member}",
                  caption=caption)  # fmt: skip
    for g in pool["grants"]:
        amounts = (_amount(pool, g[k]) for k in ("amount", "used", "reserved", "available"))
        table.add_row(g["id"], g["kind"], str(g["priority"]), _when(g["effective_at"]),
                      _when(g["expires_at"]), *amounts, _state(g))  # fmt: skip
    return table


def _auto_topup_line(pool: dict[str, Any], auto: dict[str, Any]) -> str:
    """The pool's auto top-up, why it is not buying (if it is not) and the latest top-up."""
    if auto["amount"] is not None:
        buys = f"buy {_amount(pool, auto['amount'])}"
    else:
        buys = f"buy up to {_amount(pool, auto['target'])}"
    cap = auto["monthly_cap"]
    limit = "no monthly cap" if cap is None else f"at most {_amount(pool, cap)} a month"
    text = f"auto top-up: below {_amount(pool, auto['threshold'])}, {buys} ({limit}); "
    text += f"status: {auto['status'] or 'active'}; latest: "
    latest = auto["latest"]
    if latest is None:
        return text + "none"
    text += f"{latest['state']} {_amount(pool, latest['amount'])} at {_when(latest['updated_at'])}"
    return text + (f" ({latest['error']})" if latest["error"] else "")


def _ledger_table(entries: list[dict[str, Any]], pool: str) -> Table:
    table = Table("id", "at", "member", "kind", "grant", "request", "amount", "balance",
                  title=f"credit ledger of pool {pool}")  # fmt: skip
    for e in entries:
        table.add_row(str(e["id"]), _when(e["at"]), e["member"] or "-", e["kind"],
                      e["grant_id"] or "-", e["request_id"] or "-", _amount(e, e["amount"]),
                      _amount(e, e["balance"]))  # fmt: skip
    return table
