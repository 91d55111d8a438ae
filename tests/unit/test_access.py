"""The access rules, role by action by tenant, and how the API answers their refusals."""

from __future__ import annotations

import ast
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import allotment.access
from allotment.access import Caller, in_scope
from allotment.api.errors import ApiError, error_response
from allotment.core.budgets import Budget
from allotment.core.keys import ApiKey, Role
from allotment.errors import AccessDenied, NotFoundError, ValidationError

NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)
ADMIN, TENANT_ADMIN, SERVICE, VIEWER = Role.ADMIN, Role.TENANT_ADMIN, Role.SERVICE, Role.VIEWER
TENANT_ROLES = (TENANT_ADMIN, SERVICE, VIEWER)
#: an expected refusal: the error's type and its message
Refused = tuple[type[Exception], str]
ANOTHER_TENANT: Refused = (AccessDenied, "this key belongs to another tenant")
NAME_THE_TENANT: Refused = (ValidationError, "tenant: an admin key must name the tenant")


def caller(role: Role) -> Caller:
    """A key of ``role``: an admin's belongs to no tenant, the others' to acme."""
    return Caller(ApiKey("k0", role, None if role is ADMIN else "acme", NOW))


def budget(tenant: str | None) -> Budget:
    spec = {"id": "daily", "tenant": tenant, "meter": "cost", "window": "day", "limit": "10"}
    return Budget.from_spec(spec)


def not_allowed(role: Role) -> Refused:
    return AccessDenied, f"a {role.value} key may not do this"


def check(answer: Callable[[], Any], expected: Any) -> None:
    """``answer()`` is ``expected``, or raises it when it is a ``Refused``."""
    if isinstance(expected, tuple):
        kind, message = expected
        with pytest.raises(kind) as info:
            answer()
        assert str(info.value) == message
    else:
        assert answer() == expected


# What each role may do
ROLE_ACTIONS: dict[str, tuple[Callable[[Caller], None], set[Role]]] = {
    "write usage": (Caller.may_write_usage, {ADMIN, TENANT_ADMIN, SERVICE}),
    "read": (Caller.may_read, {ADMIN, TENANT_ADMIN, VIEWER}),
    "read status": (lambda c: c.may_read(status=True), {ADMIN, TENANT_ADMIN, SERVICE, VIEWER}),
    "manage": (Caller.may_manage, {ADMIN, TENANT_ADMIN}),
    "set rates": (Caller.may_set_rates, {ADMIN}),
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("action", list(ROLE_ACTIONS))
def test_what_each_role_may_do(action: str, role: Role) -> None:
    rule, allowed = ROLE_ACTIONS[action]
    if role in allowed:
        assert rule(caller(role)) is None
        return
    with pytest.raises(AccessDenied) as info:
        rule(caller(role))
    if action == "set rates" and role is TENANT_ADMIN:
        assert str(info.value) == "exchange rates are deployment-wide: admins set them"
    else:
        assert str(info.value) == not_allowed(role)[1]


# Which tenant a request acts on (``tenant``) and what a read covers (``within``)
@pytest.mark.parametrize(
    ("role", "named", "acts_on", "within"),
    [
        (ADMIN, None, NAME_THE_TENANT, None),  # an admin reads every tenant
        (ADMIN, "acme", "acme", "acme"),
        (ADMIN, "globex", "globex", "globex"),
        *((role, None, "acme", "acme") for role in TENANT_ROLES),
        *((role, "acme", "acme", "acme") for role in TENANT_ROLES),
        *((role, "globex", ANOTHER_TENANT, ANOTHER_TENANT) for role in TENANT_ROLES),
    ],
)
def test_the_tenant_a_request_acts_on(
    role: Role, named: str | None, acts_on: Any, within: Any
) -> None:
    check(lambda: caller(role).tenant(named), acts_on)
    check(lambda: caller(role).within(named), within)


def test_an_admin_naming_no_tenant_is_told_which_field() -> None:
    with pytest.raises(ValidationError) as info:
        caller(ADMIN).tenant(None)
    assert info.value.field == "tenant"


def test_within_names_nothing_by_default() -> None:
    assert caller(ADMIN).within() is None
    assert {caller(role).within() for role in TENANT_ROLES} == {"acme"}


# Budgets: seen, changed, created
HIDDEN: Refused = (NotFoundError, "no budget with id 'daily'")
WIDE: Refused = (AccessDenied, "deployment-wide budgets are changed by admins only")


@pytest.mark.parametrize("owner", ["acme", "globex", None])
@pytest.mark.parametrize("role", list(Role))
def test_which_budgets_a_key_sees(role: Role, owner: str | None) -> None:
    seen = role is ADMIN or owner != "globex"
    the_budget = budget(owner)
    assert caller(role).sees(the_budget) is seen
    check(lambda: caller(role).visible(the_budget), the_budget if seen else HIDDEN)
    assert in_scope(the_budget, caller(role).within()) is seen


@pytest.mark.parametrize(
    ("scope", "seen"),
    [(None, {"acme", "globex", None}), ("acme", {"acme", None}), ("globex", {"globex", None})],
)
def test_a_scope_covers_its_tenant_and_the_deployment(scope: str | None, seen: set[Any]) -> None:
    assert {t for t in ("acme", "globex", None) if in_scope(budget(t), scope)} == seen


@pytest.mark.parametrize(
    ("role", "owner", "expected"),
    [
        (ADMIN, "acme", None),
        (ADMIN, "globex", None),
        (ADMIN, None, None),
        (TENANT_ADMIN, "acme", None),
        (TENANT_ADMIN, "globex", HIDDEN),
        (TENANT_ADMIN, None, WIDE),
        *((role, owner, not_allowed(role)) for role in (SERVICE, VIEWER)
          for owner in ("acme", "globex", None)),
    ],
)  # fmt: skip
def test_which_budgets_a_key_may_change(role: Role, owner: str | None, expected: Any) -> None:
    check(lambda: caller(role).may_change(budget(owner)), expected)


@pytest.mark.parametrize(
    ("role", "spec", "expected"),
    [
        (ADMIN, {"id": "d"}, {"id": "d"}),  # deployment-wide
        (ADMIN, {"id": "d", "tenant": "globex"}, {"id": "d", "tenant": "globex"}),
        (TENANT_ADMIN, {"id": "d"}, {"id": "d", "tenant": "acme"}),
        (TENANT_ADMIN, {"id": "d", "tenant": None}, {"id": "d", "tenant": "acme"}),
        (TENANT_ADMIN, {"id": "d", "tenant": ""}, {"id": "d", "tenant": "acme"}),
        (TENANT_ADMIN, {"id": "d", "tenant": "acme"}, {"id": "d", "tenant": "acme"}),
        (TENANT_ADMIN, {"id": "d", "tenant": "globex"}, ANOTHER_TENANT),
        (SERVICE, {"id": "d"}, not_allowed(SERVICE)),
        (VIEWER, {"id": "d"}, not_allowed(VIEWER)),
    ],
)
def test_whose_budget_a_key_creates(role: Role, spec: dict[str, Any], expected: Any) -> None:
    sent = dict(spec)
    check(lambda: caller(role).owned(spec), expected)
    assert spec == sent  # the caller's spec is left as it was


# Keys
@pytest.mark.parametrize(
    ("role", "new_role", "named", "expected"),
    [
        (ADMIN, "admin", None, None),
        (ADMIN, "tenant_admin", "globex", "globex"),
        (ADMIN, "viewer", None, None),  # the Governor refuses a tenant key without a tenant
        (TENANT_ADMIN, "admin", None, (AccessDenied, "only an admin key may create admin keys")),
        (TENANT_ADMIN, "tenant_admin", None, "acme"),
        (TENANT_ADMIN, "service", "acme", "acme"),
        (TENANT_ADMIN, "viewer", "globex", ANOTHER_TENANT),
        (SERVICE, "viewer", None, not_allowed(SERVICE)),
        (VIEWER, "viewer", None, not_allowed(VIEWER)),
    ],
)
def test_which_keys_a_key_creates(
    role: Role, new_role: str, named: str | None, expected: Any
) -> None:
    check(lambda: caller(role).new_key_tenant(new_role, named), expected)


# How the API answers: as it did when these were ApiErrors raised in allotment.api
@pytest.mark.parametrize(
    ("refusal", "as_before"),
    [
        (AccessDenied("this key belongs to another tenant"),
         ApiError(403, "forbidden", "this key belongs to another tenant")),
        (AccessDenied("a viewer key may not do this"),
         ApiError(403, "forbidden", "a viewer key may not do this")),
        (ValidationError("tenant", "an admin key must name the tenant"),
         ApiError(422, "invalid_request", "tenant: an admin key must name the tenant", "tenant")),
    ],
)  # fmt: skip
def test_refusals_are_answered_as_before(refusal: Exception, as_before: ApiError) -> None:
    now, then = error_response(refusal), error_response(as_before)
    assert now is not None and then is not None
    assert (now.status_code, now.body) == (then.status_code, then.body)


def test_the_rules_know_nothing_of_http_or_the_store() -> None:
    tree = ast.parse(Path(allotment.access.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    ours = {m for m in imported if m and m.startswith("allotment")}
    assert ours <= {"allotment.core.budgets", "allotment.core.keys", "allotment.errors"}
    assert not {m for m in imported if m and m.split(".")[0] in ("fastapi", "starlette")}
