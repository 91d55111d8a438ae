"""Access rules: which budgets, events and keys an API key may see or change.

Every rule is here once, for the HTTP service and the dashboard alike, so a key
gets the same answer whichever face it uses. Pure: values in, values (or one of
allotment's errors) out; no HTTP, no store. Isolation (invariant 4) rests on
these rules: a key of one tenant sees and changes only that tenant and what is
deployment-wide, and changes nothing deployment-wide.

What each role may do (``may_*``)::

    question                             admin  tenant_admin  service  viewer
    write usage: authorize, commit,      yes    yes           yes      no
      release, record events
    read status, prices                  yes    yes           yes      yes
    read usage, the ledger, budgets,     yes    yes           no       yes
      plans, rates, credit pools
    manage budgets, plans and keys,      yes    yes           no       no
      add and void grants
    set exchange rates                   yes    no            no       no

Which tenant: every key but an admin's belongs to one tenant and acts on it
alone (naming another is a 403); an admin acts on the tenant it names.

- ``tenant``: the tenant a call acts on; an admin must name one (422).
- ``within``: what a read or lookup covers (the ledger, budgets and keys
  listed, a key revoked, a commit's request id): a tenant key's own tenant; an
  admin's, the tenant named, else every tenant.
- budgets: a tenant's key sees its tenant's and the deployment-wide ones
  (``sees``, ``visible``, ``in_scope``); a tenant admin changes only its
  tenant's, a deployment-wide one is a 403 (``may_change``), and what it creates
  belongs to its tenant (``owned``).
- plans (``allotment.core.plans``) are seen, changed and created as budgets are
  (``sees``, ``visible``, ``may_change``, ``owned``); a member's plan is assigned by
  a key that may manage its tenant (``tenant``), and read by one that may read it.
- credit pools (budgets with ``credits: true``): grants are added and voided
  as the pool budget is changed (``may_change``); a read covers the members
  ``pool_member`` allows: any of its tenant's pool, and of a deployment-wide
  pool only its own tenant's member of one counted ``per: tenant`` (any other
  deployment-wide pool mixes tenants' credit: admins only).
- keys: a tenant admin creates keys of its tenant only, never an admin key
  (``new_key_tenant``).

Refusals are ``AccessDenied`` (HTTP 403 ``forbidden``); a budget (or plan) of
another tenant is ``NotFoundError`` (404), as if it were not there at all, so a key
cannot learn which ids other tenants use; an admin naming no tenant where one is
needed is ``ValidationError`` on ``tenant`` (422).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from allotment.core.budgets import Budget
from allotment.core.keys import ApiKey, Role
from allotment.errors import AccessDenied, NotFoundError, ValidationError

__all__ = ["Caller", "Owned", "in_scope"]

#: what each role may do
_WRITE_USAGE = frozenset({Role.ADMIN, Role.TENANT_ADMIN, Role.SERVICE})
_READ = frozenset({Role.ADMIN, Role.TENANT_ADMIN, Role.VIEWER})
_READ_STATUS = _READ | {Role.SERVICE}
_MANAGE = frozenset({Role.ADMIN, Role.TENANT_ADMIN})


class Owned(Protocol):
    """What belongs to a tenant, or (``tenant`` None) to the deployment: a budget, a plan."""

    @property
    def id(self) -> str: ...
    @property
    def tenant(self) -> str | None: ...


OwnedT = TypeVar("OwnedT", bound=Owned)


def in_scope(budget: Owned, scope: str | None) -> bool:
    """Whether ``budget`` (or a plan) is seen within ``scope`` (as ``Caller.within`` gives
    it; None: every tenant): one of that tenant, or a deployment-wide one."""
    return scope is None or budget.tenant is None or budget.tenant == scope


def _kind(owned: Owned) -> str:
    """What ``owned`` is called in messages: a budget, else a plan (``Plan``: the rules
    import no more than budgets and keys)."""
    return "budget" if isinstance(owned, Budget) else "plan"


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated key, and what it may see and change.

    The ``may_*`` methods return nothing or raise; the others answer which
    tenant, budget or spec a request may touch.
    """

    key: ApiKey

    @property
    def admin(self) -> bool:
        """Whether this key may touch every tenant."""
        return self.key.role is Role.ADMIN

    # what the role allows
    def may_write_usage(self) -> None:
        """Authorize, commit, release, record.

        Raises:
            AccessDenied: a viewer key.
        """
        self._need(_WRITE_USAGE)

    def may_read(self, *, status: bool = False) -> None:
        """Read status, usage, the ledger, budgets, rates (service keys: status only).

        Raises:
            AccessDenied: a key whose role may not read this.
        """
        self._need(_READ_STATUS if status else _READ)

    def may_manage(self) -> None:
        """Change budgets and keys.

        Raises:
            AccessDenied: a service or viewer key.
        """
        self._need(_MANAGE)

    def may_set_rates(self) -> None:
        """Set exchange rates: they are deployment-wide, so admins only.

        Raises:
            AccessDenied: any key but an admin's.
        """
        self._need(_MANAGE)
        if not self.admin:
            raise AccessDenied("exchange rates are deployment-wide: admins set them")

    # which tenant
    def tenant(self, named: str | None) -> str:
        """The tenant a request acts on: its own, or for admins the one named.

        Raises:
            ValidationError: an admin key named none (field ``tenant``).
            AccessDenied: a tenant's key named another tenant.
        """
        if self.admin:
            if named is None:
                raise ValidationError("tenant", "an admin key must name the tenant")
            return named
        assert self.key.tenant is not None
        if named is not None and named != self.key.tenant:
            raise AccessDenied("this key belongs to another tenant")
        return self.key.tenant

    def within(self, named: str | None = None) -> str | None:
        """The tenant a read or lookup is confined to (None: every tenant): a tenant
        key's own, for an admin the one named, if any. It answers whose request id a
        commit or release means, which events, budgets and keys are listed, and
        which tenant's prices apply.

        Raises:
            AccessDenied: a tenant's key named another tenant.
        """
        if named is None:
            return None if self.admin else self.key.tenant
        return self.tenant(named)

    # budgets and plans
    def sees(self, budget: Owned) -> bool:
        """Whether this key may see ``budget`` (or a plan): its tenant's or a
        deployment-wide one."""
        return self.admin or budget.tenant is None or budget.tenant == self.key.tenant

    def visible(self, budget: OwnedT) -> OwnedT:
        """``budget`` (or a plan), once this key may see it.

        Raises:
            NotFoundError: one of another tenant, as if there were none.
        """
        if self.sees(budget):
            return budget
        raise NotFoundError(f"no {_kind(budget)} with id {budget.id!r}")

    def may_change(self, budget: Owned) -> None:
        """Update or delete ``budget`` (or a plan): a tenant admin only its tenant's.

        Raises:
            AccessDenied: a key that may not manage, or a tenant admin and a
                deployment-wide one.
            NotFoundError: one of another tenant.
        """
        self._need(_MANAGE)
        if self.admin:
            return
        self.visible(budget)
        if budget.tenant is None:
            raise AccessDenied(f"deployment-wide {_kind(budget)}s are changed by admins only")

    def owned(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A budget (or plan) spec as this key creates it: a tenant admin's always
        belongs to its own tenant (an admin's is as given, deployment-wide without
        ``tenant``).

        Raises:
            AccessDenied: a key that may not manage, or a spec naming another tenant.
        """
        self._need(_MANAGE)
        if self.admin:
            return spec
        return spec | {"tenant": self.tenant(spec.get("tenant") or self.key.tenant)}

    # credit pools
    def pool_member(self, pool: Budget, member: str | None) -> str | None:
        """The member of credit pool ``pool`` a read covers (None: every member).

        Raises:
            NotFoundError: a pool of another tenant, or another tenant's member of a
                deployment-wide pool, as if there were none.
            AccessDenied: a tenant's key and a deployment-wide pool not counted per
                tenant (its credit is every tenant's).
        """
        self.visible(pool)
        if self.admin or pool.tenant is not None:
            return member
        if pool.per != "tenant":
            raise AccessDenied("a deployment-wide pool's credit is read by admin keys only")
        if member not in (None, "", self.key.tenant):
            raise NotFoundError(f"no member {member!r} in pool {pool.id!r}")
        return self.key.tenant

    # keys
    def new_key_tenant(self, role: str, named: str | None) -> str | None:
        """The tenant of a key this key creates with ``role``: for an admin the one
        named (the Governor checks it fits the role); else its own.

        Raises:
            AccessDenied: a key that may not manage, a tenant admin creating an
                admin key, or naming another tenant.
        """
        self._need(_MANAGE)
        if self.admin:
            return named
        if role == Role.ADMIN:
            raise AccessDenied("only an admin key may create admin keys")
        return self.tenant(named)

    def _need(self, roles: frozenset[Role]) -> None:
        if self.key.role not in roles:
            raise AccessDenied(f"a {self.key.role.value} key may not do this")
