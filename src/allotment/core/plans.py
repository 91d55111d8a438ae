"""Plans (tiers): named, versioned templates of budgets that apply per member.

A plan (system 4's ``core``, ``pro``, ``max``) is a set of budget templates
counted ``per`` one subject dimension (``install``). Its budgets exist only
as templates: a million installs make no million budget rows. A member's
plan is assigned server-side (``Assignment``), else the tenant's default
plan applies, else (when the deployment trusts its callers) the subject's
``plan`` tag; the lifecycle writes it into the call's subject as the tag
``plan`` (``PLAN_TAG``), so the ledger keeps which plan each call ran under
and a rebuild counts it there again.

Each template is materialised as an ordinary ``Budget`` (``Plan.budgets``):
id ``<plan>.<template id>``, matching ``tags.plan: <plan>``, with
``plan`` and ``slot`` set. Its counter is the **slot's**, shared by every plan
of the tenant that has a template of that id (``Budget.key``:
``<tenant>#~<slot>``): moving a member between plans whose slot counts the
same meter over the same window keeps what was used (``usage: carry``). A
``reset`` assignment bumps the member's epoch (the tag ``plan_epoch``), and
windowed plan budgets count per member *and* epoch, so they start afresh;
lifetime ones never do, so lifetime quotas survive plan changes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from allotment.core.budgets import EPOCH_TAG, PER_DIMENSIONS, Budget, budget_key
from allotment.core.subjects import check_identifier
from allotment.errors import ValidationError

__all__ = ["EPOCH_TAG", "PLAN_TAG", "Assignment", "Plan", "Usage", "plan_key"]

#: the subject tag naming the plan a call runs under
PLAN_TAG = "plan"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_:@/-]{0,63}$")  # no ".": ids join plan.slot
#: what a plan's templates may not set: the plan sets them
_SET_BY_PLAN = frozenset({"tenant", "per", "plan", "slot"})
_SPEC_KEYS = frozenset({"id", "tenant", "per", "default", "budgets", "version", "name"})


def plan_key(plan_id: str, tenant: str | None) -> str:
    """Where a plan is stored: its id within its tenant (as budgets are)."""
    return budget_key(plan_id, tenant)


class Usage(StrEnum):
    """What a plan change does with what the member used in the current windows."""

    CARRY = "carry"
    RESET = "reset"


@dataclass(frozen=True, slots=True)
class Plan:
    """A named template of budgets, counted per member of ``per``.

    ``version`` counts the plan's changes (1 when created). ``default``: the
    plan of the tenant's members without an assignment.
    """

    id: str
    per: str
    budgets: tuple[Budget, ...]
    tenant: str | None = None
    default: bool = False
    version: int = 1
    name: str | None = None
    #: the templates as given (their human-unit spec form)
    templates: tuple[Mapping[str, Any], ...] = field(default=(), compare=False, repr=False)

    @property
    def key(self) -> str:
        return plan_key(self.id, self.tenant)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], *, tenant: str | None = None) -> Plan:
        """Build a plan, naming bad fields (``budgets[1].limit``)."""
        if not isinstance(spec, Mapping):
            raise ValidationError("plan", "must be an object")
        unknown = set(spec) - _SPEC_KEYS
        if unknown:
            raise ValidationError(sorted(unknown)[0], "is not a plan field")
        plan_id = spec.get("id")
        if not isinstance(plan_id, str) or not _ID_RE.match(plan_id):
            raise ValidationError("id", "must be 1-64 letters, digits or _:@/- characters")
        owner = spec.get("tenant", tenant)
        check_identifier(owner, "tenant")
        per = spec.get("per")
        if not isinstance(per, str) or (per not in PER_DIMENSIONS and not per.startswith("tags.")):
            raise ValidationError(
                "per", "the dimension members are counted by (install, user, ...)"
            )
        default = spec.get("default", False)
        if not isinstance(default, bool):
            raise ValidationError("default", "must be true or false")
        version = spec.get("version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValidationError("version", "must be a positive integer")
        name = spec.get("name")
        check_identifier(name, "name")
        templates = spec.get("budgets")
        if not isinstance(templates, Sequence) or isinstance(templates, str | bytes):
            raise ValidationError("budgets", "must be a list of budget templates")
        budgets = []
        shares: dict[int, Decimal] = {}
        slots: set[str] = set()
        for i, template in enumerate(templates):
            budget, share = _materialise(template, plan_id, owner, per, f"budgets[{i}]")
            if budget.slot in slots:
                raise ValidationError(f"budgets[{i}].id", f"{budget.slot!r} is given twice")
            slots.add(budget.slot or "")
            budgets.append(budget)
            if share is not None:
                shares[i] = share
        for i, share in shares.items():
            budgets[i] = _shared(budgets, i, share, f"budgets[{i}].share")
        return cls(plan_id, per, tuple(budgets), owner, default, version, name,
                   tuple(dict(t) for t in templates))  # fmt: skip

    def to_spec(self) -> dict[str, Any]:
        """The human-unit dict form; ``from_spec(to_spec())`` gives back the plan."""
        return {
            "id": self.id,
            "tenant": self.tenant,
            "name": self.name,
            "per": self.per,
            "default": self.default,
            "version": self.version,
            "budgets": [
                _template_spec(b, share)
                for b, share in zip(self.budgets, self._shares(), strict=True)
            ],
        }

    def _shares(self) -> list[object]:
        """Each template's ``share`` of the plan's quota, as given (None: a limit)."""
        if not self.templates:
            return [None] * len(self.budgets)
        return [t.get("share") for t in self.templates]


def _materialise(
    template: object, plan_id: str, tenant: str | None, per: str, path: str
) -> tuple[Budget, Decimal | None]:
    """The template as a budget, and its ``share`` of the plan's quota (if given: the
    budget's limit is then set by ``_shared``)."""
    if not isinstance(template, Mapping):
        raise ValidationError(path, "must be an object")
    share = None
    if "share" in template:
        share = _share(template["share"], f"{path}.share")
        if template.get("limit") is not None:
            raise ValidationError(f"{path}.share", "give a limit or a share, not both")
        template = {k: v for k, v in template.items() if k != "share"}
    for name in _SET_BY_PLAN & set(template):
        raise ValidationError(f"{path}.{name}", "is set by the plan")
    slot = template.get("id")
    if not isinstance(slot, str) or not _ID_RE.match(slot):
        raise ValidationError(f"{path}.id", "must be 1-64 letters, digits or _:@/- characters")
    if template.get("auto_topup") is not None:
        raise ValidationError(f"{path}.auto_topup", "a plan's pools do not top up (yet)")
    match = template.get("match") or {}
    if not isinstance(match, Mapping):
        raise ValidationError(f"{path}.match", "must be an object of dimension: value(s)")
    if f"tags.{PLAN_TAG}" in match:
        raise ValidationError(f"{path}.match.tags.{PLAN_TAG}", "is set by the plan")
    spec = {**template, "id": f"{plan_id}.{slot}", "tenant": tenant, "per": per,
            "match": {**match, f"tags.{PLAN_TAG}": plan_id}}  # fmt: skip
    try:
        budget = Budget.from_spec(spec)
    except ValidationError as exc:
        raise ValidationError(f"{path}.{exc.field}", exc.message) from None
    return Budget.of_plan(budget, plan_id, slot), share


def _share(value: object, path: str) -> Decimal:
    """A share of a quota: a decimal in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal | float):
        raise ValidationError(path, "must be a decimal between 0 and 1, like 0.5")
    try:
        share = Decimal(str(value))
    except ArithmeticError:
        raise ValidationError(path, "must be a decimal between 0 and 1, like 0.5") from None
    if not share.is_finite() or not 0 < share <= 1:
        raise ValidationError(path, "must be a decimal between 0 and 1, like 0.5")
    return share


def _shared(budgets: list[Budget], index: int, share: Decimal, path: str) -> Budget:
    """Budget ``index`` with its limit ``share`` of its plan's quota: the plan's one
    budget on the same meter and window that selects nothing more than the plan (a
    sub-cap on a backend is a share of the plan's quota of that meter)."""
    sub = budgets[index]
    plan_only = ((f"tags.{PLAN_TAG}", (sub.plan,)),)
    quotas = [b for b in budgets if b is not sub and b.meter is sub.meter
              and b.window == sub.window and b.match == plan_only and not b.exclude]  # fmt: skip
    if len(quotas) != 1:
        raise ValidationError(
            path, f"is a share of the plan's {sub.meter.value} quota over the same window: "
            "the plan needs exactly one such budget without a match",
        )  # fmt: skip
    limit = quotas[0].limit
    return replace(sub, limit=None if limit is None else int(limit * share))


def _template_spec(budget: Budget, share: object = None) -> dict[str, Any]:
    spec = budget.to_spec()
    for name in ("tenant", "per", "plan", "slot"):
        spec.pop(name, None)
    spec["id"] = budget.slot
    spec["match"] = {k: v for k, v in spec["match"].items() if k != f"tags.{PLAN_TAG}"}
    if share is not None:  # the limit follows the quota
        spec.pop("limit", None)
        spec["share"] = str(share)
    return spec


@dataclass(frozen=True, slots=True)
class Assignment:
    """A member's plan, assigned server-side. ``epoch`` counts ``reset`` assignments."""

    tenant: str
    member: str
    plan: str
    assigned_at: datetime
    epoch: int = 0
    usage: Usage = Usage.CARRY

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "member": self.member,
            "plan": self.plan,
            "assigned_at": self.assigned_at.isoformat(),
            "epoch": self.epoch,
            "usage": self.usage.value,
        }
