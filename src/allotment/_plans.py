"""The Governor's plans (tiers): templates of budgets per member, and who is on which.

``Governor`` inherits these; they need only its store and clock. See
``allotment.core.plans`` for what a plan is and how members move between plans.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from allotment.core.plans import Assignment, Plan, Usage
from allotment.errors import ValidationError
from allotment.store import Store

__all__ = ["Plans"]


class Plans:
    """Plans, and the members assigned to them."""

    store: Store

    def now(self) -> datetime:
        """The current time (the Governor's clock)."""
        raise NotImplementedError

    def set_plan(self, plan: Plan | Mapping[str, Any]) -> Plan:
        """Create or replace a plan (its spec form: ``{id, tenant?, per, default?,
        budgets: [...]}``); each change raises its version. Members on it have its
        budgets from their next request."""
        parsed = plan if isinstance(plan, Plan) else Plan.from_spec(plan)
        return self.store.put_plan(parsed)

    def get_plan(self, plan_id: str, *, tenant: str | None = None) -> Plan:
        """The plan as ``tenant`` sees it: its own, else the deployment-wide one."""
        return self.store.find_plan(plan_id, tenant)

    def list_plans(self, tenant: str | None = None) -> list[Plan]:
        """Plans of ``tenant`` (with ``None``: every plan)."""
        return self.store.list_plans(tenant)

    def delete_plan(self, plan_id: str, *, tenant: str | None = None) -> None:
        """Delete a plan; its members are then on no plan (or the tenant's default)."""
        self.store.delete_plan(self.store.find_plan(plan_id, tenant))

    def assign_plan(
        self, tenant: str, member: str, plan: str, *, usage: str = "carry"
    ) -> Assignment:
        """Put ``member`` (a value of the plans' ``per`` dimension) on ``plan`` from its
        next request. ``usage="carry"`` keeps what it used in the current windows of
        the slots both plans have; ``"reset"`` starts its windowed plan budgets afresh.
        Lifetime quotas survive either."""
        try:
            how = Usage(usage)
        except ValueError:
            raise ValidationError("usage", "must be 'carry' or 'reset'") from None
        return self.store.assign_plan(tenant, member, plan, how, self.now())

    def plan_of(self, tenant: str, member: str) -> Assignment | None:
        """``member``'s assignment (None: it is on the tenant's default plan, if any)."""
        return self.store.assignment(tenant, member)
