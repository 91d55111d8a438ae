"""The service's JSON answers as typed values, for ``allotment.client``.

Each class mirrors the Governor's answer of the same role with the same
attribute names, so code written against the Governor reads a remote answer
unchanged (``decision.allowed``, ``decision.refusals[0].reason``,
``view.remaining``, ``result.event.usage.input_tokens``). Values keep their
JSON form where JSON has no type for them: times are ISO 8601 strings,
percentages decimal strings, budget limits human units (spec form). Amounts
are integers in the base unit the answer names in ``unit`` (``micros`` of
``currency`` for cost), with the same amounts for people in ``display``
(decimal strings in human units; see ``allotment.core.units``). Usage figures
and subjects are the Governor's own ``Usage`` and ``Subject``; adjustments
and overshoots its ``Adjustment`` and ``Overshoot``.

Fields a newer service adds are ignored; fields an older one lacks take their
defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, TypeVar, cast

from allotment.core.ledger import Adjustment, Overshoot
from allotment.core.subjects import Subject, parse_subject
from allotment.core.units import usage_row_json
from allotment.core.usage import USAGE_FIELDS, Usage

__all__ = [
    "Group",
    "RemoteAdjustment",
    "RemoteBudget",
    "RemoteBudgetView",
    "RemoteCommitResult",
    "RemoteDecision",
    "RemoteEvent",
    "RemoteHeartbeat",
    "RemoteKey",
    "RemoteOvershoot",
    "RemotePlan",
    "RemotePlanAssignment",
    "RemoteRefusal",
    "RemoteUsageRow",
    "RemoteWarning",
    "budget_from",
    "commit_from",
    "decision_from",
    "event_from",
    "heartbeat_from",
    "key_from",
    "plan_assignment_from",
    "plan_from",
    "usage_row_from",
    "view_from",
]

T = TypeVar("T")


class Group(dict[str, str | None]):
    """A usage row's group: a dict (as the Governor's), whose keys also read as attributes."""

    def __getattr__(self, name: str) -> str | None:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class _Answer:
    """``to_dict()``: the JSON-safe form, as the service sent it."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``display`` only where the service sent it)."""
        data: dict[str, Any] = _json(asdict(cast(Any, self)))
        return data


@dataclass(frozen=True, slots=True)
class RemoteBudgetView(_Answer):
    """One budget as it stands (``Governor.status``'s ``BudgetView``).

    Amounts are integers in ``unit``; ``display`` has them in human units (a
    granted authorization's views leave it out: None). With ``view="client"``
    the amounts (``used`` … ``display``) are None.
    """

    budget_id: str
    name: str | None = None
    meter: str = ""
    percent: str | None = None
    percent_available: str | None = None
    state: str = ""
    resets_at: str | None = None
    member: str | None = None
    mode: str | None = None
    enabled: bool | None = None
    used: int | None = None
    reserved: int | None = None
    limit: int | None = None
    remaining: int | None = None
    overshoot: int | None = None
    unit: str | None = None
    currency: str | None = None
    window_start: str | None = None
    display: dict[str, str | None] | None = None
    #: a credit pool's: whether calls draw on its grants now (and auto top-up's status)
    extra_credit: dict[str, Any] | None = None
    #: a credit pool's: its allowance is past the first soft threshold
    warning: bool | None = None
    #: a credit pool's (operator view): ``available``, ``debt``, ``drawn`` per grant
    credit: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class RemoteRefusal(_Answer):
    """Why a budget refused (``Refusal``): amounts in ``unit``, for people in ``display``."""

    budget_id: str | None
    reason: str
    requested: int = 0
    remaining: int = 0
    limit: int = 0
    unit: str | None = None
    currency: str | None = None
    resets_at: str | None = None
    retry_at: str | None = None
    display: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class RemoteWarning(_Answer):
    """A soft threshold crossed (``Warning``); ``no_budget`` and ``unknown_model`` flags
    have no budget id nor percent."""

    budget_id: str | None
    code: str
    percent: str | None = None
    threshold: str | None = None


@dataclass(frozen=True, slots=True)
class RemoteDecision(_Answer):
    """The answer to an authorization (``Decision``); a refusal has ``allowed`` False."""

    request_id: str
    allowed: bool
    reason: str | None = None
    refusals: list[RemoteRefusal] = field(default_factory=list)
    warnings: list[RemoteWarning] = field(default_factory=list)
    shadow_refusals: list[RemoteRefusal] = field(default_factory=list)
    budgets: list[RemoteBudgetView] = field(default_factory=list)
    expires_at: str | None = None
    retry_at: str | None = None
    replayed: bool = False
    degraded: bool = False
    commit_with: dict[str, Any] | None = None
    #: with route candidates: the one reserved ({provider, model, backend})
    route: dict[str, Any] | None = None
    #: with route candidates: those that could not take the call, each with its reason
    skipped: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RemoteHeartbeat(_Answer):
    """A lease after a heartbeat (``Heartbeat``): alive until ``expires_at``, or ended."""

    lease_id: str
    alive: bool
    stop: bool
    reason: str | None = None
    expires_at: str | None = None
    max_until: str | None = None
    budgets: list[RemoteBudgetView] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RemoteEvent(_Answer):
    """One ledger entry (``Event``): ``subject`` and ``usage`` are the Governor's types.

    ``display`` (from ``events()``) holds ``usage`` and ``estimate`` in human units.
    """

    id: int | None
    request_id: str
    status: str
    subject: Subject
    provider: str
    model: str
    usage: Usage
    currency: str
    occurred_at: str
    recorded_at: str
    price: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    budget_id: str | None = None
    estimate: Usage | None = None
    display: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the ledger's)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["subject"] = self.subject.to_dict()
        out["usage"] = self.usage.to_dict()
        out["estimate"] = None if self.estimate is None else self.estimate.to_dict()
        if self.display is None:
            del out["display"]
        return out


@dataclass(slots=True)
class RemoteAdjustment(Adjustment):
    """``Adjustment``, with the ``unit`` (and ``currency``) of its budget's amounts."""

    unit: str | None = None


@dataclass(slots=True)
class RemoteOvershoot(Overshoot):
    """``Overshoot`` as the service answers it: ``currency`` named for every cost budget."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return Overshoot.to_dict(self) | {"currency": self.currency}


@dataclass(frozen=True, slots=True)
class RemoteCommitResult(_Answer):
    """The event a commit or record wrote (``CommitResult``); its adjustments and late
    overshoots are ``RemoteAdjustment`` and ``RemoteOvershoot``, which name their units."""

    event: RemoteEvent
    replayed: bool = False
    late: bool = False
    adjustments: tuple[Adjustment, ...] = ()
    late_overshoot: tuple[Overshoot, ...] = ()
    #: ids of the auto top-ups the commit started
    topups: tuple[str, ...] = ()

    @property
    def overshoot(self) -> tuple[Adjustment, ...]:
        """Budgets on which the call used more than it had reserved."""
        return tuple(a for a in self.adjustments if a.difference < 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the service's)."""
        return {
            "event": self.event.to_dict(),
            "replayed": self.replayed,
            "late": self.late,
            "adjustments": [_adjustment(a) for a in self.adjustments],
            "late_overshoot": [o.to_dict() for o in self.late_overshoot],
            "topups": list(self.topups),
        }


def _adjustment(a: Adjustment) -> dict[str, Any]:
    """An adjustment as the service sends it: its ``unit`` stands for the meter."""
    out = asdict(a) | {"difference": a.difference}
    del out["meter"]
    return out


@dataclass(frozen=True, slots=True)
class RemoteUsageRow(_Answer):
    """One group of a usage breakdown (``UsageRow``)."""

    group: Group
    calls: int = 0
    errors: int = 0
    blocked: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    #: the currency of ``totals["cost_micros"]`` (the ledger's)
    currency: str | None = None
    #: the totals in human units (``audio_seconds``, ``cost``): decimal strings
    display: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: the service's row (totals beside the group, not nested)."""
        return usage_row_json(self, self.currency)


@dataclass(frozen=True, slots=True)
class RemoteBudget(_Answer):
    """A budget in spec form: human units, as ``Budget.to_spec()`` writes it.

    The service adds ``unit``, ``limit_units`` (the limit as an integer in that
    unit) and ``display`` (the limit for people); ``to_spec`` leaves them out.
    """

    id: str
    meter: str
    window: Any
    tenant: str | None = None
    name: str | None = None
    limit: str | None = None
    match: dict[str, list[str]] = field(default_factory=dict)
    exclude: dict[str, list[str]] = field(default_factory=dict)
    per: str | None = None
    soft: list[str] = field(default_factory=list)
    at_limit: str | None = None
    mode: str = "enforce"
    overrides: bool = False
    enabled: bool = True
    failure: str = "fail_closed"
    currency: str | None = None
    policy: str | None = None
    protected: bool = False
    credits: bool = False
    auto_topup: dict[str, str | None] | None = None
    recurring_grants: list[dict[str, Any]] = field(default_factory=list)
    unit: str | None = None
    limit_units: int | None = None
    display: dict[str, str | None] | None = None

    def to_spec(self) -> dict[str, Any]:
        """The spec, for ``Budget.from_spec`` or another ``set_budget``."""
        spec = self.to_dict()
        for derived in ("unit", "limit_units", "display"):
            del spec[derived]
        if self.at_limit is None:
            del spec["at_limit"]
        return spec


@dataclass(frozen=True, slots=True)
class RemotePlan(_Answer):
    """A plan (``Plan``) in spec form: its budget templates in human units, as
    ``Plan.to_spec()`` writes them, and ``key``, where it is stored (``tenant#id``)."""

    id: str
    tenant: str | None = None
    name: str | None = None
    per: str = ""
    default: bool = False
    version: int = 1
    budgets: list[dict[str, Any]] = field(default_factory=list)
    key: str = ""

    def to_spec(self) -> dict[str, Any]:
        """The spec, for ``Plan.from_spec`` or another ``set_plan``."""
        spec = self.to_dict()
        del spec["key"]
        return spec


@dataclass(frozen=True, slots=True)
class RemotePlanAssignment(_Answer):
    """A member's plan, assigned server-side (``Assignment``); ``assigned_at`` is an ISO
    8601 string, ``usage`` ``carry`` or ``reset``."""

    tenant: str
    member: str
    plan: str
    assigned_at: str
    epoch: int = 0
    usage: str = "carry"


@dataclass(frozen=True, slots=True)
class RemoteKey(_Answer):
    """An API key, never its secret (``ApiKey``)."""

    id: str
    role: str
    tenant: str | None = None
    name: str | None = None
    created_at: str | None = None
    revoked_at: str | None = None
    last_used_at: str | None = None


# --- parsing ----------------------------------------------------------------------------


def _pick(cls: type[T], data: Mapping[str, Any], **nested: Any) -> T:
    """``cls`` from the keys of ``data`` it knows (plus ``nested``, already parsed)."""
    known = {f.name: f for f in fields(cast(Any, cls))}
    values = {k: v for k, v in data.items() if k in known and k not in nested}
    missing = [
        name for name, f in known.items()
        if name not in values and name not in nested
        and f.default is MISSING and f.default_factory is MISSING
    ]  # fmt: skip
    if missing:
        raise KeyError(", ".join(missing))
    return cls(**values, **nested)


def view_from(data: Mapping[str, Any]) -> RemoteBudgetView:
    """A budget view from ``/v1/status`` or a decision."""
    return _pick(RemoteBudgetView, data)


def decision_from(data: Mapping[str, Any]) -> RemoteDecision:
    """A decision from ``/v1/authorize`` (granted, or inside a 402 or 429)."""
    refusals = [_pick(RemoteRefusal, r) for r in data.get("refusals", ())]
    return _pick(
        RemoteDecision,
        data,
        refusals=refusals,
        warnings=[_pick(RemoteWarning, w) for w in data.get("warnings", ())],
        shadow_refusals=[_pick(RemoteRefusal, r) for r in data.get("shadow_refusals", ())],
        budgets=[view_from(v) for v in data.get("budgets", ())],
    )


def heartbeat_from(data: Mapping[str, Any]) -> RemoteHeartbeat:
    """A lease's heartbeat answer."""
    return _pick(RemoteHeartbeat, data, budgets=[view_from(v) for v in data.get("budgets", ())])


def _usage(data: Mapping[str, Any]) -> Usage:
    return Usage(**{k: data[k] for k in USAGE_FIELDS if k in data})


def event_from(data: Mapping[str, Any]) -> RemoteEvent:
    """A ledger event, as ``/v1/events`` and commits carry it."""
    estimate = data.get("estimate")
    return _pick(
        RemoteEvent,
        data,
        subject=parse_subject(data["subject"]),
        usage=_usage(data["usage"]),
        estimate=None if estimate is None else _usage(estimate),
    )


def commit_from(data: Mapping[str, Any]) -> RemoteCommitResult:
    """A commit's (or a recorded event's) answer."""
    adjustments = tuple(
        RemoteAdjustment(a["budget_id"], a["member"], a["estimated"], a["actual"],
                         currency=a.get("currency"), unit=a.get("unit"))
        for a in data.get("adjustments", ())
    )  # fmt: skip
    overshoot = tuple(
        RemoteOvershoot(o["budget_id"], o["member"], o["meter"], o["amount"], o.get("currency"))
        for o in data.get("late_overshoot", ())
    )
    return _pick(
        RemoteCommitResult,
        data,
        event=event_from(data["event"]),
        adjustments=adjustments,
        late_overshoot=overshoot,
        topups=tuple(data.get("topups", ())),
    )


_ROW_KEYS = frozenset(("group", "calls", "errors", "blocked", "currency", "display"))


def usage_row_from(data: Mapping[str, Any]) -> RemoteUsageRow:
    """A ``/v1/usage`` row; its usage sums become ``totals``, as on ``UsageRow``."""
    totals = {k: v for k, v in data.items() if k not in _ROW_KEYS}
    return _pick(RemoteUsageRow, data, group=Group(data.get("group", {})), totals=totals)


def budget_from(data: Mapping[str, Any]) -> RemoteBudget:
    """A budget in spec form."""
    return _pick(RemoteBudget, data)


def plan_from(data: Mapping[str, Any]) -> RemotePlan:
    """A plan, as ``/v1/plans`` answers it."""
    return _pick(RemotePlan, data)


def plan_assignment_from(data: Mapping[str, Any]) -> RemotePlanAssignment:
    """A member's assignment, as ``/v1/plans/assignments`` answers it."""
    return _pick(RemotePlanAssignment, data)


def key_from(data: Mapping[str, Any]) -> RemoteKey:
    """A key (the ``secret`` a creation answer carries is read apart)."""
    return _pick(RemoteKey, data)


#: what the service leaves out rather than sending null (``display`` of a granted
#: authorization's budgets; a credit pool's fields on other budgets)
_SENT_IF_SET = frozenset({"display", "extra_credit", "warning", "credit"})


def _json(value: Any) -> Any:
    """``asdict`` output made JSON-safe: Subject and Usage values as their dicts, and no
    ``display`` where the service sent none (a granted authorization's budgets)."""
    if isinstance(value, Subject | Usage):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items() if v is not None or k not in _SENT_IF_SET}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value
