"""The pure parts of credit pools: burn order, counter keys, grants, auto top-up specs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from allotment.core.budgets import Budget, budget_key
from allotment.core.credits import Grant, GrantKind, burn_order, debt_key, grant_key, split_key
from allotment.core.ledger import Charge
from allotment.core.topups import AutoTopUp, topup_key
from allotment.errors import ValidationError
from allotment.lifecycle.credits import holds_credit

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def grant(grant_id: str, **extra: object) -> Grant:
    fields: dict[str, object] = {"kind": GrantKind.PURCHASE, "effective_at": T0}
    fields |= extra
    return Grant("acme#pool", "", grant_id, 10, created_at=T0, **fields)  # type: ignore[arg-type]


def test_the_burn_order_is_priority_expiry_promotional_effective_id() -> None:
    soon, later = T0 + timedelta(days=1), T0 + timedelta(days=9)
    grants = [
        grant("f", effective_at=T0 - timedelta(days=1)),
        grant("e"),
        grant("d", kind=GrantKind.PROMOTIONAL),
        grant("c", expires_at=later),
        grant("b", expires_at=soon),
        grant("a", priority=1, expires_at=soon),
        grant("z", priority=-1),
    ]
    assert [g.id for g in burn_order(grants)] == ["z", "b", "c", "d", "f", "e", "a"]


@pytest.mark.parametrize("tenant", [None, "acme", "we!rd", "a#b", "x$topup"])
def test_credit_counter_keys_never_collide_with_budget_keys(tenant: str | None) -> None:
    pool = budget_key("pool", tenant)
    keys = {grant_key(pool, "g1"), debt_key(pool), topup_key(pool)}
    budgets = {budget_key(i, t) for i in ("pool", "g1", "pool.g1") for t in (None, tenant)}
    assert not keys & budgets
    assert split_key(grant_key(pool, "g1")) == (pool, "g1")
    assert split_key(debt_key(pool)) == (pool, "")
    assert split_key(pool) is None
    # holds_credit may say yes for a plain budget (a tenant with "!"), never no for a grant
    assert holds_credit([Charge(grant_key(pool, "g1"), "", 0, 5)])


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"amount": 0}, "amount"), ({"effective_at": datetime(2026, 11, 1)}, "effective_at"),  # noqa: DTZ001
     ({"expires_at": T0}, "expires_at"), ({"id": "bad id"}, "id"),
     ({"metadata": {"k": 5}}, "metadata.k")],
)  # fmt: skip
def test_a_grant_names_its_bad_field(extra: dict[str, object], field: str) -> None:
    fields: dict[str, object] = {"pool": "p", "member": "", "id": "g", "amount": 10,
                                 "kind": GrantKind.PURCHASE, "effective_at": T0,
                                 "created_at": T0}  # fmt: skip
    with pytest.raises(ValidationError) as error:
        Grant(**(fields | extra))  # type: ignore[arg-type]
    assert error.value.field == field


def test_a_grant_counts_between_effective_and_expiry_unless_voided() -> None:
    g = grant("g", effective_at=T0, expires_at=T0 + timedelta(hours=1))
    assert not g.live(T0 - timedelta(seconds=1))
    assert g.live(T0) and g.live(T0 + timedelta(minutes=59))
    assert not g.live(T0 + timedelta(hours=1)) and g.ended(T0 + timedelta(hours=1))
    voided = grant("v", voided_at=T0 + timedelta(minutes=5))
    assert voided.live(T0) and not voided.live(T0 + timedelta(minutes=5))


def test_auto_topup_specs_round_trip_and_name_bad_fields() -> None:
    spec = {"id": "p", "tenant": "t", "meter": "cost", "window": "month", "limit": "20",
            "credits": True, "auto_topup": {"threshold": "5", "target": "25.50"}}  # fmt: skip
    budget = Budget.from_spec(spec)
    assert budget.auto_topup == AutoTopUp(5_000_000, target=25_500_000)
    assert Budget.from_spec(budget.to_spec()) == budget
    assert budget.auto_topup.to_buy(1_000_000) == 24_500_000
    for auto, field in [({"threshold": "5"}, "auto_topup"),
                        ({"threshold": "5", "amount": "1", "target": "9"}, "auto_topup"),
                        ({"threshold": "5", "target": "4"}, "auto_topup.target"),
                        ({"amount": "5"}, "auto_topup.threshold"),
                        ({"threshold": "5", "amount": "1", "every": "day"},
                         "auto_topup.every")]:  # fmt: skip
        with pytest.raises(ValidationError) as error:
            Budget.from_spec({**spec, "auto_topup": auto})
        assert error.value.field == field
    with pytest.raises(ValidationError) as plain:
        Budget.from_spec({**spec, "credits": False})
    assert plain.value.field == "auto_topup"
