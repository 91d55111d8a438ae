"""The Python client: the Governor's methods against a real ``allotment serve``."""

from __future__ import annotations

import asyncio
import inspect
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from allotment import (
    AccessDenied,
    AsyncGovernor,
    BudgetExceeded,
    ConflictError,
    EventStatus,
    Governor,
    NotFoundError,
    ValidationError,
)
from allotment.api import create_app
from allotment.client import (
    AsyncClient,
    Client,
    RemoteBudget,
    RemoteCommitResult,
    RemoteDecision,
    RemoteGrant,
    RemoteKey,
    RemotePlan,
    RemotePlanAssignment,
    RemotePoolStatus,
    RemoteTopUp,
)
from allotment.payments import TestGateway
from allotment.store.base import EventQuery
from tests.e2e.server import ADMIN, serve

SUBJECT = {"tenant": "acme", "user": "u1", "feature": "chat"}
BUDGET = {"id": "acme-day", "tenant": "acme", "meter": "tokens", "window": "day", "limit": 1000}


def workflow(gov: Any) -> tuple[Any, ...]:
    """Written once against the Governor's API; runs in-process or remote unchanged."""
    gov.create_budget(BUDGET)
    granted = gov.authorize("r1", SUBJECT, "openai", "gpt-4o-mini", {"output_tokens": 400})
    gov.commit("r1", {"input_tokens": 100, "output_tokens": 300})
    refused = gov.authorize("r2", SUBJECT, "openai", "gpt-4o-mini", {"output_tokens": 700})
    with gov.hold(SUBJECT, "openai", "gpt-4o-mini", {"output_tokens": 100}) as h:
        h.commit({"output_tokens": 50})
    with pytest.raises(BudgetExceeded) as info:
        gov.hold(SUBJECT, "openai", "gpt-4o-mini", {"output_tokens": 999})
    view = gov.status(SUBJECT)[0]
    rows = gov.usage("acme", by=["feature"])
    return (
        granted.allowed, refused.allowed, refused.refusals[0].reason, refused.refusals[0].remaining,
        info.value.reason, view.used, view.remaining, view.state, len(rows),
    )  # fmt: skip


def test_the_same_code_runs_in_process_and_remote(tmp_path: Path) -> None:
    local = workflow(Governor("memory://"))
    with serve(f"sqlite:///{tmp_path / 'c.db'}") as base, Client(base, ADMIN) as remote:
        assert workflow(remote) == local
        assert local[:5] == (True, False, "estimate_exceeds_remaining", 600,
                             "estimate_exceeds_remaining")  # fmt: skip
        assert remote.get_budget("acme-day").limit == "1000"
        remote.update_budget("acme-day", limit=2000)
        assert remote.list_budgets("acme")[0].limit == "2000"
        assert remote.record("p1", SUBJECT, "openai", "gpt-4o-mini", {"input_tokens": 7}).event
        with pytest.raises(ValidationError) as bad:
            remote.authorize("r9", SUBJECT, "openai", "m", {"output_tokens": -1})
        assert bad.value.field == "estimate.output_tokens"
        with pytest.raises(NotFoundError):
            remote.commit("nope", {})
        for tenant in ("acme", "globex"):  # two tenants, one request id
            remote.authorize("job", SUBJECT | {"tenant": tenant}, "openai", "gpt-4o-mini")
        with pytest.raises(ValidationError) as ambiguous:
            remote.release("job")
        assert ambiguous.value.field == "tenant"
        assert remote.release("job", tenant="globex") == "released"
        assert remote.commit("job", {"output_tokens": 1}, tenant="acme").event.request_id == "job"
        remote.delete_budget("acme-day")
        with Client(base, "ak_000000000000_not-a-real-key-at-all") as stranger:
            with pytest.raises(AccessDenied):
                stranger.status(SUBJECT)


def test_async_client_in_process(tmp_path: Path) -> None:
    gov = Governor(f"sqlite:///{tmp_path / 'a.db'}")
    gov.create_budget(BUDGET)
    _, secret = gov.create_key("service", "acme")
    _, viewer = gov.create_key("viewer", "acme")
    transport = httpx.ASGITransport(app=create_app(gov))

    async def main() -> None:
        async with AsyncClient("http://allotment", secret, transport=transport) as client:
            decision = await client.authorize("r1", SUBJECT, "openai", "gpt-4o-mini",
                                              {"output_tokens": 600})  # fmt: skip
            assert decision.allowed and decision.budgets[0].reserved == 600
            await client.commit("r1", {"output_tokens": 500})
            assert (await client.status(SUBJECT))[0].used == 500
            assert await client.release("r1") == "committed"
            refused = await client.authorize("r2", SUBJECT, "openai", "m", {"output_tokens": 501})
            assert not refused.allowed and refused.refusals[0].remaining == 500
            recorded = await client.record("p1", SUBJECT, "openai", "gpt-4o-mini",
                                           {"input_tokens": 7})  # fmt: skip
            assert recorded.event.usage.input_tokens == 7
            with pytest.raises(AccessDenied):  # a service key may not read usage
                await client.usage("acme")
        async with AsyncClient("http://allotment", viewer, transport=transport) as reader:
            rows = await reader.usage("acme", by=["feature"])
            assert [(r.group.feature, r.calls) for r in rows] == [("chat", 2)]
            assert (await reader.list_budgets())[0].id == "acme-day"

    asyncio.run(main())
    gov.close()


def test_the_clients_cover_the_governors_budget_and_key_methods(tmp_path: Path) -> None:
    gov = Governor(f"sqlite:///{tmp_path / 'b.db'}")
    _, admin = gov.create_key("admin")
    with Client("http://allotment", admin, http=TestClient(create_app(gov))) as remote:
        made = remote.set_budget(BUDGET | {"soft": [50], "name": "first"})
        assert isinstance(made, RemoteBudget) and made.soft == ["50"]
        replaced = remote.set_budget(BUDGET)  # wholesale, as Governor.set_budget
        assert (replaced.soft, replaced.name) == (["80"], None)
        assert gov.get_budget("acme-day").name is None
        file = tmp_path / "b.yaml"
        file.write_text("budgets:\n  - {id: acme-week, tenant: acme, meter: tokens, "
                        "window: week, limit: 5000}\npricing: {unknown_model: deny}\n")  # fmt: skip
        assert [b.id for b in remote.load_budgets(file)] == ["acme-week"]
        assert {b.id for b in remote.list_budgets("acme")} == {"acme-day", "acme-week"}
        key, secret = remote.create_key("viewer", "acme", "dash")
        assert isinstance(key, RemoteKey) and secret.startswith(f"ak_{key.id}_")
        assert [k.name for k in remote.list_keys("acme")] == ["dash"]
        remote.revoke_key(key.id)
        assert remote.list_keys("acme")[0].revoked_at is not None
        granted = remote.authorize("o1", SUBJECT, "openai", "gpt-4o-mini", {"output_tokens": 100})
        result = remote.commit("o1", {"input_tokens": 50, "output_tokens": 100})
        assert isinstance(granted, RemoteDecision) and isinstance(result, RemoteCommitResult)
        overshoot = {o.budget_id: o.difference for o in result.overshoot}
        assert overshoot == {"acme-day": -50, "acme-week": -50}  # used 150, reserved 100
        [event] = remote.events(EventQuery(tenant="acme", status=EventStatus.SUCCESS))
        assert event.request_id == "o1" and event.usage.tokens == 150
        assert [r.group["feature"] for r in remote.usage("acme", ["feature"], order="tokens")] == [
            "chat"
        ]
    gov.close()


def test_async_client_holds(tmp_path: Path) -> None:
    gov = Governor(f"sqlite:///{tmp_path / 'h.db'}")
    gov.create_budget(BUDGET)
    _, secret = gov.create_key("service", "acme")
    transport = httpx.ASGITransport(app=create_app(gov))

    async def main() -> None:
        async with AsyncClient("http://allotment", secret, transport=transport) as client:
            async with client.hold(SUBJECT, "openai", "gpt-4o-mini", {"output_tokens": 300}) as h:
                assert h.decision.budgets[0].reserved == 300
                await h.commit({"output_tokens": 200})
            with pytest.raises(RuntimeError):
                async with client.hold(SUBJECT, "openai", "gpt-4o-mini", {"output_tokens": 9}):
                    raise RuntimeError("provider failed")
            with pytest.raises(BudgetExceeded):
                async with client.hold(SUBJECT, "openai", "gpt-4o-mini", {"output_tokens": 801}):
                    pass
            assert (await client.status(SUBJECT))[0].used == 200

    asyncio.run(main())
    released = gov.events(EventQuery(status=EventStatus.RELEASED))
    assert [e.reason for e in released] == ["exception"]
    gov.close()


def test_the_clients_answers_name_units_and_show_amounts(tmp_path: Path) -> None:
    """A EUR cost budget (ledger in USD, 0.5 EUR a dollar) and a token budget, read
    through the client's typed answers."""
    gov = Governor(f"sqlite:///{tmp_path / 'u.db'}")
    gov.set_rate("USD", "EUR", "0.5", effective_from=datetime(2020, 1, 1, tzinfo=UTC))
    _, admin = gov.create_key("admin")
    with Client("http://allotment", admin, http=TestClient(create_app(gov))) as remote:
        remote.create_budget({"id": "eur", "tenant": "acme", "meter": "cost", "currency": "EUR",
                              "window": "day", "limit": "5"})  # fmt: skip
        remote.create_budget(BUDGET)
        remote.record("p1", SUBJECT, "openai", "gpt-4o-mini", {"output_tokens": 200, "cost": "2.4"})
        views = {v.budget_id: v for v in remote.status(SUBJECT)}
        eur, tokens = views["eur"], views["acme-day"]
        assert (eur.used, eur.limit, eur.unit, eur.currency) == (1_200_000, 5_000_000, "micros",
                                                                 "EUR")  # fmt: skip
        assert eur.display == {"used": "1.20", "reserved": "0.00", "limit": "5.00",
                               "remaining": "3.80", "overshoot": "0.00"}  # fmt: skip
        assert (tokens.unit, tokens.currency, tokens.display and tokens.display["used"]) == (
            "tokens", None, "200")  # fmt: skip
        refused = remote.authorize("r9", SUBJECT, "openai", "gpt-4o-mini", {"cost": "9"})
        [refusal] = refused.refusals
        assert (refusal.budget_id, refusal.unit, refusal.currency) == ("eur", "micros", "EUR")
        assert refusal.display == {"requested": "4.50", "remaining": "3.80", "limit": "5.00"}
        budget = remote.get_budget("eur")
        assert (budget.limit, budget.unit, budget.limit_units) == ("5.000000", "micros", 5_000_000)
        assert budget.display == {"limit": "5.00"} and "unit" not in budget.to_spec()
        assert remote.set_budget(budget.to_spec()).limit_units == 5_000_000  # round trip
        [row] = remote.usage("acme", ["user"])
        assert (row.totals["cost_micros"], row.currency, row.display["cost"]) == (
            2_400_000, "USD", "2.40")  # fmt: skip
        [event, _] = remote.events(EventQuery(tenant="acme"))
        assert event.currency == "USD" and event.display is not None
        assert event.display["usage"]["cost"] == "2.40"
        granted = remote.authorize("r1", SUBJECT, "openai", "gpt-4o-mini", {"cost": "1"})
        assert granted.budgets[0].unit is not None and granted.budgets[0].display is None
        result = remote.commit("r1", {"cost": "2"})
        units = {(a.budget_id, getattr(a, "unit", None), getattr(a, "currency", None))
                 for a in result.adjustments}  # fmt: skip
        assert units == {("eur", "micros", "EUR"), ("acme-day", "tokens", None)}
    gov.close()


# --- credit pools -------------------------------------------------------------------------

POOL = {"id": "plan", "tenant": "acme", "meter": "tokens", "window": "month", "limit": 100,
        "credits": True}  # fmt: skip
START = datetime(2026, 1, 1, tzinfo=UTC)
CREDIT_METHODS = ("add_grant", "void_grant", "pool", "credit_ledger", "resume_topups",
                  "topup_status")  # fmt: skip


def credit_workflow(gov: Any) -> tuple[Any, ...]:
    """Credit pools, written once against the Governor's API: in-process or remote."""
    gov.create_budget(POOL)
    first, added = gov.add_grant("plan", 50, tenant="acme", grant_id="paid",
                                 effective_at=START, idempotency_key="pay_1")  # fmt: skip
    again, added_again = gov.add_grant("plan", 50, tenant="acme", grant_id="paid",
                                       effective_at=START, idempotency_key="pay_1")  # fmt: skip
    with pytest.raises(ConflictError):
        gov.add_grant("plan", 51, tenant="acme", effective_at=START, idempotency_key="pay_1")
    gov.add_grant("plan", 20, tenant="acme", grant_id="promo", kind="promotional",
                  effective_at=START, metadata={"campaign": "launch"})  # fmt: skip
    granted = gov.authorize("r1", SUBJECT, "openai", "gpt-4o-mini", {"output_tokens": 130})
    refused = gov.authorize("r2", SUBJECT, "openai", "gpt-4o-mini", {"output_tokens": 41})
    gov.commit("r1", {"output_tokens": 125})
    voided = gov.void_grant("plan", "promo", tenant="acme")
    status = gov.pool("plan", tenant="acme")
    entries = gov.credit_ledger("plan", tenant="acme")
    later = gov.credit_ledger("plan", tenant="acme", after_id=entries[-2].id or 0)
    with pytest.raises(ValidationError) as plain:
        gov.pool("plan", tenant="acme", member="u1")
    return (
        (first.id, first.amount, first.kind, added), (again.id, added_again), granted.allowed,
        refused.allowed, refused.refusals[0].reason, voided.voided_at is not None,
        (status.available, status.debt),
        [(g.grant.id, g.used, g.reserved, g.available) for g in status.grants],
        [(e.kind, e.grant_id, e.amount, e.balance) for e in entries], len(later),
        plain.value.field,
    )  # fmt: skip


def test_credit_pools_run_the_same_in_process_and_remote(tmp_path: Path) -> None:
    local = credit_workflow(Governor("memory://"))
    with serve(f"sqlite:///{tmp_path / 'p.db'}") as base, Client(base, ADMIN) as remote:
        assert credit_workflow(remote) == local
        assert local[:5] == (("paid", 50, "purchase", True), ("paid", False), True, False,
                             "credits_exhausted")  # fmt: skip
        # 125 used: the month's 100, then promo (promotional burns first), then 5 of paid
        assert local[6:8] == ((45, 0), [("promo", 20, 0, 0), ("paid", 5, 0, 45)])
        status = remote.pool("plan", tenant="acme")
        assert isinstance(status, RemotePoolStatus) and status.unit == "tokens"
        assert status.grants[0].grant.metadata == {"campaign": "launch"}
        assert status.to_dict()["grants"][1]["display"]["available"] == "45"
        grant, _ = remote.add_grant("plan", "7", tenant="acme")
        assert isinstance(grant, RemoteGrant) and grant.display == {"amount": "7"}
        with pytest.raises(NotFoundError):
            remote.pool("nope", tenant="acme")
        with pytest.raises(NotFoundError):
            remote.void_grant("plan", "nope", tenant="acme")


def test_async_faces_move_credit(tmp_path: Path) -> None:
    gov = Governor(f"sqlite:///{tmp_path / 'ap.db'}")
    gov.create_budget(POOL | {"per": "user"})
    _, admin = gov.create_key("tenant_admin", "acme")
    transport = httpx.ASGITransport(app=create_app(gov))

    async def main() -> None:
        async with AsyncClient("http://allotment", admin, transport=transport) as client:
            made, added = await client.add_grant("plan", 30, member="u1", expires_at=START.replace(
                year=2100), priority=-1)  # fmt: skip
            assert added and made.member == "u1" and made.expires_at.startswith("2100-01-01")
            assert (await client.pool("plan", member="u1")).available == 30
            entries = await client.credit_ledger("plan", member="u1")
            assert [(e.kind, e.amount, e.unit) for e in entries] == [("grant", 30, "tokens")]
            assert (await client.void_grant("plan", made.id, member="u1")).voided_at
        async with AsyncGovernor(f"sqlite:///{tmp_path / 'ap.db'}") as local:
            grant, added = await local.add_grant("plan", 5, tenant="acme", member="u2")
            assert added and (await local.pool("plan", tenant="acme", member="u2")).available == 5
            kinds = [e.kind for e in await local.credit_ledger("plan", tenant="acme")]
            assert kinds == ["grant", "void", "grant"]
            voided = await local.void_grant("plan", grant.id, tenant="acme", member="u2")
            assert voided.voided_at is not None

    asyncio.run(main())
    gov.close()


#: grants only, topped up by 50 below 20 (u1's own), at most 100 a month
TOPPED = POOL | {"per": "user", "limit": 0,
                 "auto_topup": {"threshold": 20, "amount": 50, "monthly_cap": 100}}  # fmt: skip
U1 = {"tenant": "acme", "member": "u1"}


def failed_topup(url: str) -> tuple[Governor, str]:
    """A store where u1's auto top-up failed (paused), and an admin key of it."""
    gov = Governor(url, gateway=TestGateway(outcome="failed"), topup_worker=False)
    gov.create_budget(TOPPED)
    gov.add_grant("plan", 30, **U1)
    gov.authorize("r1", SUBJECT, "openai", "gpt-4o-mini", {"output_tokens": 15})
    gov.commit("r1", {"output_tokens": 15})  # 15 left: below 20
    assert [t.state.value for t in gov.run_topups()] == ["failed"]
    return gov, gov.create_key("admin")[1]


def test_auto_topup_status_and_resume_in_process_and_remote(tmp_path: Path) -> None:
    gov, admin = failed_topup(f"sqlite:///{tmp_path / 't.db'}")
    remote = Client("http://allotment", admin, http=TestClient(create_app(gov)))
    status, latest = remote.topup_status("plan", **U1)
    assert status == "auto_topup_failed" and isinstance(latest, RemoteTopUp)
    local_status, local_latest = gov.topup_status("plan", **U1)
    assert (status, latest.to_dict()) == (local_status, local_latest and local_latest.to_dict())
    assert remote.pool("plan", **U1).auto_topup == {
        "threshold": 20, "amount": 50, "target": None, "monthly_cap": 100,
        "status": "auto_topup_failed", "latest": latest.to_dict()}  # fmt: skip
    with pytest.raises(ValidationError) as unnamed:
        remote.resume_topups("plan", tenant="acme")
    assert unnamed.value.field == "member"
    assert remote.resume_topups("plan", **U1) is True
    assert gov.resume_topups("plan", **U1) is False  # no longer paused
    status, latest = remote.topup_status("plan", **U1)
    assert (status, latest and latest.state) == (None, "resumed")
    gov.create_budget(POOL | {"id": "flat"})
    assert remote.topup_status("flat", tenant="acme") == (None, None)  # no auto top-up
    gov.close()


def test_async_faces_resume_auto_topup(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'at.db'}"
    gov, admin = failed_topup(url)
    transport = httpx.ASGITransport(app=create_app(gov))

    async def main() -> None:
        async with AsyncClient("http://allotment", admin, transport=transport) as client:
            status, latest = await client.topup_status("plan", **U1)
            assert status == "auto_topup_failed" and latest is not None
            assert (latest.state, latest.amount) == ("failed", 50)
            assert await client.resume_topups("plan", **U1)
            assert not await client.resume_topups("plan", **U1)
        async with AsyncGovernor(url, gateway=TestGateway(), topup_worker=False) as local:
            status, resumed = await local.topup_status("plan", tenant="acme", member="u1")
            assert status is None and resumed is not None and resumed.state.value == "resumed"
            assert not await local.resume_topups("plan", tenant="acme", member="u1")
            await local.authorize("r2", SUBJECT, "openai", "gpt-4o-mini", {"output_tokens": 1})
            await local.commit("r2", {"output_tokens": 1})  # still low: a new top-up
            [paid] = await local.run_topups()
            assert paid.state.value == "succeeded"
            assert (await local.pool("plan", **U1)).available == 64

    asyncio.run(main())
    gov.close()


@pytest.mark.parametrize("face", [Client, AsyncClient, AsyncGovernor])
def test_the_faces_take_the_governors_credit_arguments(face: type) -> None:
    for name in CREDIT_METHODS:
        ours = inspect.signature(getattr(face, name)).parameters.values()
        theirs = inspect.signature(getattr(Governor, name)).parameters.values()
        assert [(p.name, p.kind, p.default) for p in ours] == [
            (p.name, p.kind, p.default) for p in theirs
        ], name


# --- plans --------------------------------------------------------------------------------

TIERS = [
    {"id": "core", "tenant": "acme", "per": "install", "default": True,
     "budgets": [{"id": "credits", "meter": "credits", "window": "lifetime", "limit": 100}]},
    {"id": "pro", "tenant": "acme", "per": "install",
     "budgets": [{"id": "credits", "meter": "credits", "window": "month", "limit": 1000}]},
]  # fmt: skip
INSTALL = {"tenant": "acme", "install": "i-1"}
PLAN_METHODS = ("set_plan", "get_plan", "list_plans", "delete_plan", "assign_plan", "plan_of")


def plan_workflow(gov: Any) -> tuple[Any, ...]:
    """Plans, written once against the Governor's API: in-process or remote."""
    for spec in TIERS:
        gov.set_plan(spec)
    bigger = [TIERS[1]["budgets"][0] | {"limit": 1500}]  # type: ignore[index]
    changed = gov.set_plan(TIERS[1] | {"budgets": bigger})
    pro = gov.get_plan("pro", tenant="acme")
    listed = gov.list_plans("acme")
    before = gov.plan_of("acme", "i-1")
    on_core = gov.status(INSTALL)[0]
    assigned = gov.assign_plan("acme", "i-1", "pro")
    read = gov.plan_of("acme", "i-1")
    on_pro = gov.status(INSTALL)[0]
    reset = gov.assign_plan("acme", "i-1", "core", usage="reset")
    with pytest.raises(NotFoundError):
        gov.assign_plan("acme", "i-1", "gold")
    with pytest.raises(ValidationError) as bad:
        gov.assign_plan("acme", "i-1", "pro", usage="forget")
    gov.delete_plan("pro", tenant="acme")
    with pytest.raises(NotFoundError):
        gov.get_plan("pro", tenant="acme")
    return (
        changed.version, pro.to_spec(), [(p.id, p.version) for p in listed], before,
        (on_core.budget_id, on_core.remaining), (assigned.plan, assigned.epoch, assigned.usage),
        read.plan, (on_pro.budget_id, on_pro.remaining), (reset.plan, reset.epoch, reset.usage),
        bad.value.field,
    )  # fmt: skip


def test_plans_run_the_same_in_process_and_remote(tmp_path: Path) -> None:
    local = plan_workflow(Governor("memory://"))
    with serve(f"sqlite:///{tmp_path / 'pl.db'}") as base, Client(base, ADMIN) as remote:
        assert plan_workflow(remote) == local
        assert local[0] == 2 and local[2] == [("core", 1), ("pro", 2)] and local[3] is None
        assert local[4:] == (("core.credits", 100), ("pro", 0, "carry"), "pro",
                             ("pro.credits", 1500), ("core", 1, "reset"), "usage")  # fmt: skip
        plan = remote.get_plan("core", tenant="acme")
        assert isinstance(plan, RemotePlan) and plan.key == "acme#core"
        assert remote.set_plan(plan.to_spec()).version == 2  # round trip
        assert isinstance(remote.plan_of("acme", "i-1"), RemotePlanAssignment)
        file = tmp_path / "tiers.yaml"
        file.write_text("plans:\n  - {id: max, tenant: acme, per: install, budgets: "
                        "[{id: credits, meter: credits, window: month}]}\n")  # fmt: skip
        assert remote.load_budgets(file) == []
        assert remote.get_plan("max", tenant="acme").budgets[0]["limit"] is None


def test_async_faces_set_and_assign_plans(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'apl.db'}"
    gov = Governor(url)
    _, admin = gov.create_key("tenant_admin", "acme")
    transport = httpx.ASGITransport(app=create_app(gov))

    async def main() -> None:
        async with AsyncClient("http://allotment", admin, transport=transport) as client:
            saved = await client.set_plan(TIERS[0] | {"tenant": None})  # its tenant's
            assert (saved.tenant, saved.version) == ("acme", 1)
            await client.apply_config([], plans=[TIERS[1]])
            assert [p.id for p in await client.list_plans()] == ["core", "pro"]
            assert (await client.get_plan("pro")).budgets[0]["limit"] == "1000"
            assert await client.plan_of("acme", "i-1") is None
            assigned = await client.assign_plan("acme", "i-1", "pro", usage="reset")
            assert (assigned.plan, assigned.epoch) == ("pro", 1)
            await client.delete_plan("pro")
            assert [p.id for p in await client.list_plans("acme")] == ["core"]
        async with AsyncGovernor(url) as local:
            assert (await local.get_plan("core", tenant="acme")).default
            await local.set_plan(TIERS[1])
            assert (await local.assign_plan("acme", "i-2", "pro")).plan == "pro"
            assert (await local.plan_of("acme", "i-2")) is not None
            assert [p.id for p in await local.list_plans("acme")] == ["core", "pro"]
            await local.delete_plan("pro", tenant="acme")
            await local.apply_config([], plans=[TIERS[1]])
            assert (await local.get_plan("pro", tenant="acme")).version == 1

    asyncio.run(main())
    gov.close()


@pytest.mark.parametrize("face", [Client, AsyncClient, AsyncGovernor])
def test_the_faces_take_the_governors_plan_arguments(face: type) -> None:
    for name in (*PLAN_METHODS, "apply_config"):
        ours = inspect.signature(getattr(face, name)).parameters.values()
        theirs = inspect.signature(getattr(Governor, name)).parameters.values()
        assert [(p.name, p.kind, p.default) for p in ours] == [
            (p.name, p.kind, p.default) for p in theirs
        ], name
