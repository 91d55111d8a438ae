"""Budgets: a limit on one meter over one window for the usage a selector matches.

Amounts inside a ``Budget`` are integer base units of its meter (tokens,
micro-units of currency, milliseconds of audio). Specs, the dict form used by
config files and the CLI, write them in human units (``limit: "5.00"`` for
five dollars, seconds for audio); ``Budget.from_spec`` converts exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from fnmatch import fnmatchcase
from operator import attrgetter
from typing import Any, NamedTuple, TypeVar

from allotment.core.credits import RecurringGrant
from allotment.core.decisions import State
from allotment.core.money import decimal_to_units, parse_decimal, units_to_decimal
from allotment.core.routes import BACKEND_TAG
from allotment.core.subjects import (
    SCALAR_DIMENSIONS,
    Subject,
    check_identifier,
    is_secret_name,
)
from allotment.core.topups import AutoTopUp
from allotment.core.usage import Meter
from allotment.core.windows import Window
from allotment.errors import ValidationError

__all__ = ["PER_DIMENSIONS", "Budget", "Call", "Failure", "Mode", "budget_key", "in_order"]

#: the subject tag of a member's epoch of a plan (``allotment.core.plans``)
EPOCH_TAG = "plan_epoch"
#: Dimensions a ``per`` budget can split on.
PER_DIMENSIONS = (*SCALAR_DIMENSIONS, "provider", "model")
_MATCH_DIMENSIONS = frozenset((*SCALAR_DIMENSIONS, "group", "provider", "model"))
#: Specificity levels for ``overrides``: individual > group > tenant > global.
_INDIVIDUAL = frozenset(("user", "key", "agent", "session", "device", "install"))
_E = TypeVar("_E", bound=StrEnum)
_HUNDRED = Decimal(100)
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$")


class Mode(StrEnum):
    """How a budget acts on a call that does not fit."""

    ENFORCE = "enforce"  # refuse
    WARN = "warn"  # allow, with a warning
    SHADOW = "shadow"  # allow, report what it would have refused
    OFF = "off"  # meter only


class Failure(StrEnum):
    """What an authorization does when the store cannot be reached."""

    CLOSED = "fail_closed"
    OPEN = "fail_open"


class Call(NamedTuple):
    """A call as budgets see it: who, which provider, which model.

    A named tuple: two are made per authorize+commit pair, and a frozen
    dataclass took four times as long to make.
    """

    subject: Subject
    provider: str | None
    model: str | None

    def value(self, dimension: str) -> str | None:
        """The call's value for a ``per``/``match`` dimension."""
        if dimension == "provider":
            return self.provider
        if dimension == "model":
            return self.model
        if dimension.startswith("tags."):
            return self.subject.tag(dimension[5:])
        value: str | None = getattr(self.subject, dimension)
        return value


Selector = tuple[tuple[str, tuple[str, ...]], ...]


def _selector_matches(selector: Selector, call: Call, unknown: bool) -> bool:
    """Whether every pair of ``selector`` hits ``call``.

    A call without provider and model (a status query) hits those dimensions
    as ``unknown`` says: True for ``match``, False for ``exclude``.
    """
    for dimension, patterns in selector:
        if dimension == "group":
            candidates: Sequence[str] = call.subject.groups
        else:
            value = call.value(dimension)
            if value is None and dimension in ("provider", "model"):
                if unknown:
                    continue
                return False
            candidates = () if value is None else (value,)
        if not any(_pattern_hit(p, c) for p in patterns for c in candidates):
            return False
    return True


def _check_concurrency(budget: Budget) -> None:
    """A concurrency budget counts leases in flight now: no window, no credit."""
    if budget.window.kind != "lifetime":
        raise ValidationError("window", "a concurrency budget counts leases now: lifetime")
    if budget.credits:
        raise ValidationError("credits", "a concurrency budget cannot be a credit pool")


def _pattern_hit(pattern: str, value: str) -> bool:
    return fnmatchcase(value, pattern) if "*" in pattern or "?" in pattern else pattern == value


def budget_key(budget_id: str, tenant: str | None) -> str:
    """Where a budget is stored: ids are scoped by tenant, so two tenants may both
    have a ``daily``; a deployment-wide budget's key is its id. An id never holds
    ``#``, so a key names one budget only."""
    return budget_id if tenant is None else f"{tenant}#{budget_id}"


@dataclass(frozen=True, slots=True)
class Budget:
    """One limit. See the module docstring for units.

    Attributes:
        tenant: the owning tenant; ``None`` for a deployment-wide budget.
        match: usage this budget counts (all pairs must hit; values are
            alternatives and may use ``*`` globs). ``group`` hits when any of
            the subject's groups does; ``tags.NAME`` selects on a tag.
        exclude: usage this budget never counts, same form as ``match``.
        per: count each distinct value of this dimension separately; a call
            without that dimension is not counted by the budget.
        soft: warning thresholds in percent of ``limit``.
        at_limit: percent from which the state is ``at_limit``.
        overrides: replace less specific budgets of the same meter, window
            and ``per`` for the calls this one matches.
        enabled: a disabled budget still records usage, never refuses or warns.
        policy: budgets naming the same policy (with the same meter and window)
            warn as one, as system 2's policies do: at the lowest first soft
            threshold among those that apply to a call, measured against the
            one with the least room left.
        protected: deleting the budget is refused until this is set false.
        credits: the budget is a credit pool (``allotment.core.credits``): once its
            allowance for the window is gone, calls draw on its grants.
        auto_topup: a pool's automatic top-up (``allotment.core.topups``).
        recurring_grants: grants a pool gives each member every period
            (``allotment.core.credits.RecurringGrant``), as a plan's monthly credits.
    """

    id: str
    meter: Meter
    window: Window
    limit: int | None = None
    tenant: str | None = None
    name: str | None = None
    match: Selector = ()
    exclude: Selector = ()
    per: str | None = None
    soft: tuple[Decimal, ...] = (Decimal(80),)
    at_limit: Decimal = Decimal(95)
    mode: Mode = Mode.ENFORCE
    overrides: bool = False
    enabled: bool = True
    failure: Failure = Failure.CLOSED
    currency: str | None = None
    policy: str | None = None
    protected: bool = False
    credits: bool = False
    auto_topup: AutoTopUp | None = None
    recurring_grants: tuple[RecurringGrant, ...] = ()
    #: the plan whose template this budget is (``allotment.core.plans``), and the
    #: template's id: its counter is the slot's, shared by the tenant's plans
    plan: str | None = None
    slot: str | None = None
    #: where the budget is stored: its id, within its tenant (see ``budget_key``)
    key: str = field(init=False, repr=False, compare=False)
    level: int = field(init=False, repr=False, compare=False)
    _soft_bp: int | None = field(init=False, repr=False, compare=False)
    _at_limit_bp: int = field(init=False, repr=False, compare=False)
    #: consumption (used + reserved) below which this budget has nothing to say:
    #: under the limit and under the first soft threshold; None without a limit
    quiet_below: int | None = field(init=False, repr=False, compare=False)
    #: reads the ``per`` dimension off a call (in C, but for tags); None without ``per``
    _member_of: Callable[[Call], str | None] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID_RE.match(self.id):
            raise ValidationError("id", "must be 1-128 letters, digits or _.:@/- characters")
        check_identifier(self.tenant, "tenant")
        check_identifier(self.name, "name")
        check_identifier(self.policy, "policy")
        if self.limit is not None and (
            isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 0
        ):
            raise ValidationError("limit", "must be a non-negative integer or null")
        if self.per is not None and self.per not in PER_DIMENSIONS and not _is_tag(self.per):
            raise ValidationError("per", f"unknown dimension {self.per!r}")
        _check_percents(self.soft, self.at_limit)
        if self.currency is not None and (
            self.meter is not Meter.COST or not re.fullmatch(r"[A-Z]{3}", self.currency)
        ):
            raise ValidationError("currency", "an ISO 4217 code, only on cost budgets")
        if self.meter is Meter.CONCURRENCY:
            _check_concurrency(self)
        if self.credits and (self.limit is None or self.mode is not Mode.ENFORCE):
            message = "a credit pool needs a limit (0: grants only) and mode enforce"
            raise ValidationError("credits", message)
        if self.auto_topup is not None and not self.credits:
            raise ValidationError("auto_topup", "only a credit pool (credits: true) tops up")
        if self.recurring_grants and not self.credits:
            message = "only a credit pool (credits: true) gives grants"
            raise ValidationError("recurring_grants", message)
        if (self.plan is None) != (self.slot is None):
            raise ValidationError("plan", "a plan's budget names its plan and its slot")
        counted_as = self.id if self.slot is None else f"~{self.slot}"  # "~": in no budget id
        object.__setattr__(self, "key", budget_key(counted_as, self.tenant))
        object.__setattr__(self, "level", _level(self))
        # Thresholds in basis points keep state checks in integer arithmetic.
        object.__setattr__(self, "_soft_bp", int(self.soft[0] * 100) if self.soft else None)
        object.__setattr__(self, "_at_limit_bp", int(self.at_limit * 100))
        quiet = _quiet_below(self.limit, self._soft_bp)
        if self.policy is not None and quiet is not None:
            quiet = 0  # a policy's threshold depends on which budgets apply: always look closely
        object.__setattr__(self, "quiet_below", quiet)
        member_of = _member_getter(self.per)
        if self.plan is not None and member_of is not None and self.window.kind != "lifetime":
            member_of = _per_epoch(member_of)
        object.__setattr__(self, "_member_of", member_of)

    @property
    def enforced(self) -> bool:
        """Whether this budget can refuse a call."""
        return self.enabled and self.mode is Mode.ENFORCE and self.limit is not None

    def state(self, consumed: int) -> State:
        """The state of this budget once ``consumed`` base units (used + reserved) are gone."""
        limit = self.limit
        if limit is None:
            return State.WITHIN_BUDGET
        if consumed >= limit:
            return State.EXCEEDED
        scaled = consumed * 10_000
        if scaled >= self._at_limit_bp * limit:
            return State.AT_LIMIT
        if self._soft_bp is not None and scaled >= self._soft_bp * limit:
            return State.APPROACHING_LIMIT
        return State.WITHIN_BUDGET

    def percent(self, consumed: int) -> Decimal | None:
        """``consumed`` in percent of the limit, rounded down to 0.01 (None without a limit).

        Rounded down so that 94.999 % is not shown as the 95 % of ``at_limit``.
        """
        limit = self.limit
        if limit is None:
            return None
        if limit == 0:
            return _HUNDRED
        return Decimal(consumed * 10_000 // limit).scaleb(-2)

    def crossed(self, consumed: int) -> Decimal | None:
        """The highest soft threshold ``consumed`` has reached, if any."""
        limit = self.limit
        if limit is None or self._soft_bp is None or consumed * 10_000 < self._soft_bp * limit:
            return None
        return [t for t in self.soft if consumed * 10_000 >= int(t * 100) * limit][-1]

    def member(self, call: Call) -> str | None:
        """The counter this call charges (``""`` if pooled), or None if not counted."""
        if self.tenant is not None and call.subject.tenant != self.tenant:
            return None
        if self.match and not _selector_matches(self.match, call, True):
            return None
        if self.exclude and _selector_matches(self.exclude, call, False):
            return None
        member_of = self._member_of
        return "" if member_of is None else member_of(call)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], *, tenant: str | None = None) -> Budget:
        """Build a budget from its human-unit dict form, naming bad fields."""
        if not isinstance(spec, Mapping):
            raise ValidationError("budget", "must be an object")
        unknown = set(spec) - _SPEC_KEYS
        if unknown:
            raise ValidationError(sorted(unknown)[0], "is not a budget field")
        for required in ("id", "meter", "window"):
            if required not in spec:
                raise ValidationError(required, "is required")
        meter = Meter.parse(spec["meter"])
        limit = spec.get("limit")
        return cls(
            id=spec["id"],
            meter=meter,
            window=Window.parse(spec["window"]),
            limit=None if limit is None else decimal_to_units(limit, meter.scale, "limit"),
            tenant=spec.get("tenant", tenant),
            name=_opt_str(spec, "name"),
            match=_parse_selector(spec.get("match"), "match"),
            exclude=_parse_selector(spec.get("exclude"), "exclude"),
            per=_opt_str(spec, "per"),
            soft=tuple(_percent(v, "soft") for v in _as_list(spec.get("soft", [80]), "soft")),
            at_limit=_percent(spec.get("at_limit", 95), "at_limit"),
            mode=_enum(Mode, spec.get("mode", "enforce"), "mode"),
            overrides=_flag(spec, "overrides", False),
            enabled=_flag(spec, "enabled", True),
            failure=_enum(Failure, spec.get("failure", "fail_closed"), "failure"),
            currency=_opt_str(spec, "currency"),
            policy=_opt_str(spec, "policy"),
            protected=_flag(spec, "protected", False),
            credits=_flag(spec, "credits", False),
            auto_topup=_auto_topup(spec.get("auto_topup"), meter),
            recurring_grants=_recurring(spec.get("recurring_grants"), meter),
        )

    def to_spec(self) -> dict[str, Any]:
        """The human-unit dict form; ``from_spec(to_spec())`` gives back the budget."""
        scale = self.meter.scale
        return {
            "id": self.id,
            "tenant": self.tenant,
            "name": self.name,
            "meter": self.meter.value,
            "window": self.window.to_spec(),
            "limit": None if self.limit is None else str(self.human(self.limit)),
            "match": {k: list(v) for k, v in self.match},
            "exclude": {k: list(v) for k, v in self.exclude},
            "per": self.per,
            "soft": [str(p) for p in self.soft],
            "at_limit": str(self.at_limit),
            "mode": self.mode.value,
            "overrides": self.overrides,
            "enabled": self.enabled,
            "failure": self.failure.value,
            "currency": self.currency,
            "policy": self.policy,
            "protected": self.protected,
            "credits": self.credits,
            "auto_topup": None if self.auto_topup is None else self.auto_topup.to_spec(scale),
            "recurring_grants": [r.to_spec(scale) for r in self.recurring_grants],
        }

    @classmethod
    def of_plan(cls, template: Budget, plan: str, slot: str) -> Budget:
        """``template`` as the budget of ``plan``'s template ``slot``."""
        return replace(template, plan=plan, slot=slot)

    def human(self, units: int) -> Decimal:
        """Base units of this budget's meter as a human amount."""
        return units_to_decimal(units, self.meter.scale)


def in_order(budgets: Iterable[Budget]) -> list[Budget]:
    """``budgets`` in the one order every store lists and applies them in.

    Deployment-wide budgets first, then tenants' ones, each by id (the same id
    in several tenants: by key, so by tenant). A decision checks budgets in
    this order, so the first refusal it names, and with it a refused call's
    answer, is the same on every backend.
    """
    return sorted(budgets, key=_order)


def _order(budget: Budget) -> tuple[bool, str, str]:
    return budget.tenant is not None, budget.id, budget.key


_SPEC_KEYS = frozenset(
    "id tenant name meter window limit match exclude per soft at_limit mode overrides "
    "enabled failure currency policy protected credits auto_topup recurring_grants".split()
)


def _auto_topup(spec: object, meter: Meter) -> AutoTopUp | None:
    return None if spec is None else AutoTopUp.from_spec(spec, meter.scale)


def _recurring(spec: object, meter: Meter) -> tuple[RecurringGrant, ...]:
    if spec is None:
        return ()
    if not isinstance(spec, list | tuple):
        raise ValidationError("recurring_grants", "must be a list")
    return tuple(RecurringGrant.from_spec(s, meter.scale, f"recurring_grants[{i}]")
                 for i, s in enumerate(spec))  # fmt: skip


def _quiet_below(limit: int | None, soft_bp: int | None) -> int | None:
    if limit is None:
        return None
    if soft_bp is None:
        return limit
    # consumed * 10_000 < soft_bp * limit  <=>  consumed < ceil(soft_bp * limit / 10_000)
    return min(limit, -(-soft_bp * limit // 10_000))


def _member_getter(per: str | None) -> Callable[[Call], str | None] | None:
    """``Call.value(per)`` in one call: an ``attrgetter``, made in C, for all but tags."""
    if per is None:
        return None  # pooled: one counter for every call
    if _is_tag(per):
        return lambda call: call.value(per)
    return attrgetter(per if per in ("provider", "model") else f"subject.{per}")


def _per_epoch(member_of: Callable[[Call], str | None]) -> Callable[[Call], str | None]:
    """A windowed plan budget's member: the member, and its epoch once a ``reset``
    assignment started one (lifetime plan budgets never reset)."""

    def member(call: Call) -> str | None:
        value = member_of(call)
        epoch = call.subject.tag(EPOCH_TAG) if value is not None else None
        return value if not epoch else f"{value}~{epoch}"

    return member


def _is_tag(dimension: str) -> bool:
    return dimension.startswith("tags.") and len(dimension) > 5


def _level(budget: Budget) -> int:
    """Specificity from what the budget selects; ``per`` only splits, so it does not count."""
    dims = {d for d, _ in budget.match}
    if dims & _INDIVIDUAL:
        return 3
    if "group" in dims:
        return 2
    return 1 if budget.tenant is not None or "tenant" in dims else 0


def _check_percents(soft: tuple[Decimal, ...], at_limit: Decimal) -> None:
    for i, value in enumerate(soft):
        if not isinstance(value, Decimal) or not 0 < value <= 100:
            raise ValidationError(f"soft[{i}]", "must be a percentage in (0, 100]")
        if value * 100 != int(value * 100):
            raise ValidationError(f"soft[{i}]", "may have at most two decimal places")
    if list(soft) != sorted(soft):
        raise ValidationError("soft", "thresholds must be in ascending order")
    if not isinstance(at_limit, Decimal) or not 0 < at_limit <= 100:
        raise ValidationError("at_limit", "must be a percentage in (0, 100]")
    if at_limit * 100 != int(at_limit * 100):
        raise ValidationError("at_limit", "may have at most two decimal places")


def _parse_selector(raw: object, field_name: str) -> Selector:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ValidationError(field_name, "must be an object of dimension: value(s)")
    out: list[tuple[str, tuple[str, ...]]] = []
    for given, values in sorted(raw.items()):
        path = f"{field_name}.{given}"
        # A route's backend is a tag of the call's subject (allotment.core.routes).
        dimension = f"tags.{BACKEND_TAG}" if given == BACKEND_TAG else given
        if dimension not in _MATCH_DIMENSIONS and not _is_tag(str(dimension)):
            raise ValidationError(path, "is not a dimension budgets can select on")
        if _is_tag(str(dimension)) and is_secret_name(dimension[5:]):
            raise ValidationError(path, "names a secret: such tags are never stored")
        items = _as_list(values, path)
        if not items or not all(isinstance(v, str) and v for v in items):
            raise ValidationError(path, "must be a non-empty string or list of strings")
        for item in items:
            check_identifier(item, path, required=True)
        out.append((dimension, tuple(items)))
    return tuple(sorted(out))


def _as_list(value: object, field_name: str) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str | int | Decimal) and not isinstance(value, bool):
        return [value]
    raise ValidationError(field_name, "must be a value or a list of values")


def _percent(value: object, field_name: str) -> Decimal:
    if isinstance(value, float) and math.isfinite(value):
        # Percentages are not money; a float from YAML is taken at its shortest repr.
        value = str(value)
    return parse_decimal(value, field_name)


def _opt_str(spec: Mapping[str, Any], key: str) -> str | None:
    value = spec.get(key)
    if value is not None and not isinstance(value, str):
        raise ValidationError(key, "must be a string")
    return value


def _flag(spec: Mapping[str, Any], key: str, default: bool) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise ValidationError(key, "must be true or false")
    return value


def _enum(kind: type[_E], value: object, field_name: str) -> _E:
    try:
        return kind(str(value)) if isinstance(value, str) else kind(value)  # type: ignore[arg-type]
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise ValidationError(field_name, f"unknown value {value!r} (one of {choices})") from None
