"""Budget ids are scoped by tenant (issue 16, item 12), on every backend.

Two tenants may each have a ``daily`` budget: neither learns that the other's
exists, each counts only its own calls, and deleting one leaves the other. A
tenant budget never shares its id with a deployment-wide one, since decisions
and the ledger name budgets by id and a tenant sees both kinds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from allotment.errors import ConflictError, NotFoundError, ValidationError
from allotment.governor import Governor
from allotment.store.base import EventQuery

ACME = {"tenant": "acme", "user": "u1"}
GLOBEX = {"tenant": "globex", "user": "u1"}


def daily(tenant: str | None, limit: int = 1000, **extra: Any) -> dict[str, Any]:
    return {"id": "daily", "tenant": tenant, "meter": "tokens", "window": "day",
            "limit": limit, **extra}  # fmt: skip


def tokens(n: int) -> dict[str, int]:
    return {"input_tokens": n}


def view(gov: Governor, subject: dict[str, str]) -> tuple[str | None, int, int, int | None]:
    [v] = gov.status(subject)
    return v.budget.tenant, v.used, v.reserved, v.limit


def test_two_tenants_each_have_their_own_daily(gov: Governor) -> None:
    gov.create_budget(daily("acme", 1000))
    gov.create_budget(daily("globex", 50))  # no conflict: another tenant's id is not taken
    assert gov.authorize("a", ACME, "openai", "m", tokens(300)).allowed
    gov.commit("a", tokens(200))
    refused = gov.authorize("g", GLOBEX, "openai", "m", tokens(300))
    assert not refused.allowed and refused.refusals[0].budget_id == "daily"
    assert view(gov, ACME) == ("acme", 200, 0, 1000)
    assert view(gov, GLOBEX) == ("globex", 0, 0, 50)
    assert [e.budget_id for e in gov.events(EventQuery(tenant="globex"))] == ["daily"]


def test_get_update_and_delete_name_the_tenant(gov: Governor) -> None:
    gov.create_budget(daily("acme", 1000))
    assert gov.get_budget("daily").tenant == "acme"  # the only one: no need to name it
    gov.create_budget(daily("globex", 50))
    with pytest.raises(ValidationError) as ambiguous:
        gov.get_budget("daily")
    assert ambiguous.value.field == "tenant"
    assert gov.get_budget("daily", tenant="globex").limit == 50
    assert gov.update_budget("daily", {"limit": 70}, tenant="globex").limit == 70
    assert gov.get_budget("daily", tenant="acme").limit == 1000
    gov.delete_budget("daily", tenant="acme")
    assert [b.tenant for b in gov.list_budgets()] == ["globex"]
    assert gov.get_budget("daily").limit == 70
    with pytest.raises(NotFoundError):
        gov.get_budget("daily", tenant="acme")


def test_counters_stay_apart_across_delete_and_recreate(gov: Governor) -> None:
    gov.create_budget(daily("acme"))
    gov.create_budget(daily("globex"))
    gov.record("a", ACME, "openai", "m", tokens(100))
    assert gov.authorize("g", GLOBEX, "openai", "m", tokens(40)).allowed
    gov.delete_budget("daily", tenant="acme")
    assert view(gov, GLOBEX) == ("globex", 0, 40, 1000)  # held charge survives the other's delete
    gov.commit("g", tokens(30))
    gov.create_budget(daily("acme"))  # backfilled from acme's ledger only
    assert view(gov, ACME) == ("acme", 100, 0, 1000)
    assert view(gov, GLOBEX) == ("globex", 30, 0, 1000)
    gov.rebuild()
    assert view(gov, ACME) == ("acme", 100, 0, 1000)
    assert view(gov, GLOBEX) == ("globex", 30, 0, 1000)


def test_a_tenant_id_never_shares_a_deployment_wide_id(gov: Governor) -> None:
    gov.create_budget(daily(None, 10_000))
    with pytest.raises(ConflictError, match="deployment-wide"):
        gov.create_budget(daily("acme"))
    with pytest.raises(ConflictError, match="deployment-wide"):
        gov.set_budget(daily("acme"))
    gov.create_budget(daily("acme") | {"id": "acme-daily"})
    with pytest.raises(ConflictError, match="tenant budgets"):
        gov.set_budget(daily(None) | {"id": "acme-daily"})
    # as a tenant sees it: its own, else the deployment-wide one
    assert gov.get_budget("daily", tenant="acme").tenant is None
    assert gov.get_budget("acme-daily", tenant="acme").tenant == "acme"
    with pytest.raises(NotFoundError):
        gov.get_budget("acme-daily", tenant="globex")


def test_id_and_tenant_cannot_be_changed(gov: Governor) -> None:
    gov.create_budget(daily("acme"))
    for field, value in (("tenant", "globex"), ("id", "weekly")):
        with pytest.raises(ValidationError) as refused:
            gov.update_budget("daily", {field: value}, tenant="acme")
        assert refused.value.field == field
    assert gov.update_budget("daily", tenant="acme", limit=5, name="same tenant").limit == 5


def test_a_file_may_give_two_tenants_the_same_id(gov: Governor, tmp_path: Path) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text(
        "budgets:\n"
        "  - {id: daily, tenant: acme, meter: tokens, window: day, limit: 10}\n"
        "  - {id: daily, tenant: globex, meter: tokens, window: day, limit: 20}\n"
    )
    assert [b.key for b in gov.load_budgets(path)] == ["acme#daily", "globex#daily"]
    path.write_text(
        "budgets:\n"
        "  - {id: weekly, tenant: acme, meter: tokens, window: week, limit: 10}\n"
        "  - {id: weekly, tenant: acme, meter: tokens, window: week, limit: 20}\n"
    )
    with pytest.raises(ValidationError, match="twice in tenant 'acme'") as twice:
        gov.load_budgets(path)
    assert twice.value.field == "budgets[1].id"
    path.write_text(
        "budgets:\n"
        "  - {id: weekly, tenant: acme, meter: tokens, window: week, limit: 10}\n"
        "  - {id: weekly, meter: tokens, window: week, limit: 20}\n"
    )
    with pytest.raises(ConflictError):
        gov.load_budgets(path)
    assert [b.key for b in gov.list_budgets()] == ["acme#daily", "globex#daily"]  # nothing written
