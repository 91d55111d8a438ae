"""Response shapes of the v1 API, for the OpenAPI document other languages code against.

They document what the routes return (the routes build plain JSON, so no
response pays for a second serialization); the Schemathesis run in the test
suite checks every real response against them. Extra fields are forbidden so
a drift between code and contract shows up there.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ErrorBody", "RefusalBody", "Unit"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    """``code`` and ``message`` always; more fields by error (``field``, ``budget_id``…)."""

    model_config = ConfigDict(extra="allow")
    code: str
    message: str


class ErrorBody(_Out):
    """Every error response."""

    error: ErrorDetail


#: the base unit an object's amounts are counted in (see allotment.core.units)
Unit = Literal["tokens", "micros", "ms", "requests", "credits", "leases"]
_UNIT = "The base unit of the amounts beside it: tokens, micros (of ``currency``), ms (audio), "
_UNIT += "requests or credits"
_PERCENT = "For people: a decimal string with two decimals, rounded down"
_DISPLAY = "The same amounts as exact decimal strings in human units, for people"


class ViewDisplay(_Out):
    """A budget view's amounts in human units: currency units, seconds, tokens."""

    used: str
    reserved: str
    limit: str | None
    remaining: str | None
    overshoot: str


class AutoTopUpStatusOut(_Out):
    """Why auto top-up is not keeping a pool topped up, with a message for end users."""

    status: str = Field(description="auto_topup_failed or auto_topup_monthly_limit_reached")
    message: str


class ExtraCreditOut(_Out):
    """Whether a credit pool's calls now draw on its grants (its allowance is gone)."""

    active: bool
    auto_topup: AutoTopUpStatusOut | None = Field(
        None, description="Set when auto top-up is paused or at its monthly limit"
    )


class DrawnOut(_Out):
    """What a call holds on one grant, in the pool's ``unit``."""

    grant_id: str
    amount: int


class CreditDisplay(_Out):
    """A credit pool member's credit and debt in human units."""

    available: str
    debt: str


class CreditOut(_Out):
    """A credit pool member's standing: what its live grants have left, its debt, and
    what this call drew on which grant (amounts in the budget's ``unit``)."""

    available: int
    debt: int
    drawn: list[DrawnOut]
    auto_topup: AutoTopUpStatusOut | None = Field(
        None, description="Set when auto top-up is paused or at its monthly limit"
    )
    display: CreditDisplay | None = Field(None, description=_DISPLAY)


class BudgetViewOut(_Out):
    """One budget as it stands (``view=client`` leaves out the amounts).

    Amounts are integers in ``unit``; a cost budget names its ``currency``. A
    credit pool (``credits: true``) adds ``extra_credit`` and ``warning`` (in the
    client view too) and, for operators, ``credit``.
    """

    budget_id: str
    name: str | None
    meter: str
    percent: str | None = Field(description=_PERCENT)
    percent_available: str | None = Field(description=_PERCENT)
    state: str
    resets_at: str | None
    member: str | None = None
    mode: str | None = None
    enabled: bool | None = None
    used: int | None = None
    reserved: int | None = None
    limit: int | None = None
    remaining: int | None = None
    overshoot: int | None = Field(
        None, description="How far use is past the limit (late commits, usage over the estimate)"
    )
    unit: Unit | None = Field(None, description=_UNIT)
    currency: str | None = Field(None, description="The currency of a cost budget")
    window_start: str | None = None
    display: ViewDisplay | None = Field(
        None, description=_DISPLAY + " (status and refusals; a granted authorize leaves it out)"
    )
    extra_credit: ExtraCreditOut | None = Field(
        None, description="A credit pool: whether calls draw on its grants now"
    )
    warning: bool | None = Field(
        None, description="A credit pool: its allowance is past the first soft threshold"
    )
    credit: CreditOut | None = Field(None, description="A credit pool: its grants and debt")


class RefusalDisplay(_Out):
    """A refusal's amounts in human units."""

    requested: str
    remaining: str
    limit: str


class RefusalOut(_Out):
    """Why a budget refused (or would have); amounts in ``unit`` (None: no budget refused)."""

    budget_id: str | None
    reason: str
    requested: int
    remaining: int
    limit: int
    unit: Unit | None = Field(description=_UNIT)
    currency: str | None
    resets_at: str | None
    retry_at: str | None = Field(
        None, description="For a rate or concurrency limit: the soonest the call can fit"
    )
    display: RefusalDisplay | None = Field(None, description=_DISPLAY)


class WarningOut(_Out):
    """A soft threshold crossed, a warn-mode budget over its limit, or a flag no budget
    raised (``no_budget``, ``unknown_model``: no budget id, no percent)."""

    budget_id: str | None
    code: str
    percent: str | None = Field(description=_PERCENT)
    threshold: str | None


class SubjectOut(_Out):
    """Who a call is attributed to; dimensions it does not have are left out."""

    tenant: str
    user: str | None = None
    groups: list[str] | None = None
    key: str | None = None
    agent: str | None = None
    session: str | None = None
    feature: str | None = None
    device: str | None = None
    install: str | None = None
    tags: dict[str, str] | None = None


class CommitWithOut(_Out):
    """What the commit of a degraded grant sends along."""

    subject: SubjectOut
    provider: str
    model: str


class RouteOut(_Out):
    """A route candidate: where a call may be served."""

    provider: str
    model: str
    backend: str | None


class SkippedOut(RouteOut):
    """A route candidate that could not take the call, and why."""

    reason: str | None
    budget_id: str | None
    retry_at: str | None
    refusals: list[RefusalOut]


class DecisionOut(_Out):
    """The answer to an authorization."""

    request_id: str
    allowed: bool
    reason: str | None
    refusals: list[RefusalOut]
    warnings: list[WarningOut]
    shadow_refusals: list[RefusalOut]
    budgets: list[BudgetViewOut]
    expires_at: str | None
    retry_at: str | None = Field(
        None,
        description="Refused by rate or concurrency limits only: when to try again "
        "(``Retry-After`` says it in seconds)",
    )
    replayed: bool
    degraded: bool
    commit_with: CommitWithOut | None = Field(
        None,
        description="For a degraded grant (the store was down): send these fields "
        "(subject, provider, model) with its commit so any worker meters it",
    )
    route: RouteOut | None = Field(
        None, description="With route candidates: the one reserved (null when refused)"
    )
    skipped: list[SkippedOut] = Field(
        default_factory=list,
        description="With route candidates: those that could not take the call, in "
        "order, each with its reason (all of them when refused)",
    )


class UsageFiguresOut(_Out):
    """A call's usage: integers, each named with its unit (``cost_micros``: micro-units of
    the ``currency`` beside it, None when unpriced)."""

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    input_audio_tokens: int
    output_audio_tokens: int
    audio_ms: int
    images: int
    requests: int
    credits: int
    cost_micros: int | None


class HumanUsageOut(_Out):
    """Usage in human units, named as the input takes them: ``audio_seconds``, ``cost``."""

    input_tokens: str
    output_tokens: str
    cached_input_tokens: str
    cache_write_tokens: str
    reasoning_tokens: str
    input_audio_tokens: str
    output_audio_tokens: str
    audio_seconds: str
    images: str
    requests: str
    credits: str
    cost: str | None


class EventDisplay(_Out):
    """An event's usage and estimate in human units."""

    usage: HumanUsageOut
    estimate: HumanUsageOut | None


class PriceOut(BaseModel):
    """The price an event was charged at, and where it came from.

    ``source`` is ``catalog``, ``override``, ``fallback``, ``caller`` or ``missing``;
    catalog prices add their unit prices and the catalog version, and a repriced
    event keeps the prices it had under ``previous``.
    """

    model_config = ConfigDict(extra="allow")
    amount_micros: int | None = Field(None, description="Micro-units of ``currency``")
    currency: str | None = None
    source: str | None = None
    unknown_model: bool | None = None


class EventOut(_Out):
    """One ledger entry."""

    id: int | None
    request_id: str
    status: str
    subject: SubjectOut
    provider: str
    model: str
    usage: UsageFiguresOut
    estimate: UsageFiguresOut | None = Field(
        None, description="What a blocked or released call asked for (its usage is zero)"
    )
    currency: str = Field(description="The ledger's currency: that of ``cost_micros``")
    price: PriceOut
    reason: str | None
    budget_id: str | None
    occurred_at: str
    recorded_at: str
    display: EventDisplay | None = Field(None, description=_DISPLAY + " (GET /v1/events)")


class AdjustmentOut(_Out):
    """Estimate against actual on one budget, in its ``unit`` (negative difference:
    overshoot); ``unit`` is None if the budget is gone."""

    budget_id: str
    member: str
    estimated: int
    actual: int
    difference: int
    unit: Unit | None = Field(description=_UNIT)
    currency: str | None


class OvershootOut(_Out):
    """How far a late commit took an enforced budget past its hard limit, in ``unit``."""

    budget_id: str
    member: str
    meter: str
    amount: int
    unit: Unit | None = Field(description=_UNIT)
    currency: str | None


class CommitOut(_Out):
    """The priced event a commit (or a post-hoc record) wrote."""

    event: EventOut
    replayed: bool
    late: bool
    adjustments: list[AdjustmentOut]
    overshoot: list[AdjustmentOut] = Field(
        default_factory=list, description="The adjustments where the call used more than reserved"
    )
    late_overshoot: list[OvershootOut] = Field(
        default_factory=list,
        description="For a commit after its reservation expired or was released: "
        "the hard limits it crossed, and by how much",
    )
    topups: list[str] = Field(
        default_factory=list,
        description="The auto top-ups this commit started (their ids): it left a credit "
        "pool's balance below its threshold",
    )


class HeartbeatOut(_Out):
    """A lease after a heartbeat: alive until ``expires_at``, or ended (``stop``)."""

    lease_id: str
    alive: bool
    stop: bool = Field(description="The lease has ended: its holder should stop")
    reason: str | None = Field(
        description="Why it stopped: max_duration, expired, released or committed"
    )
    expires_at: str | None
    max_until: str | None = Field(description="When it reaches its maximum duration")
    budgets: list[BudgetViewOut]


class ReleaseOut(_Out):
    """The reservation's state after a release."""

    request_id: str
    state: str


class CommitsOut(_Out):
    """The events a batch wrote."""

    events: list[CommitOut]


class StatusOut(_Out):
    """Every budget that applies to a subject."""

    budgets: list[BudgetViewOut]


class UsageRowOut(UsageFiguresOut):
    """One group's totals: calls, errors, blocked calls and the usage sums."""

    group: dict[str, str | None] = Field(description="The value of each ``by`` dimension")
    calls: int
    errors: int
    blocked: int
    cost_micros: int = Field(description="Micro-units of ``currency``")
    currency: str = Field(description="The ledger's currency")
    display: HumanUsageOut = Field(description=_DISPLAY)


class UsageOut(_Out):
    """Grouped usage totals, one row per group."""

    rows: list[UsageRowOut]


class EventPage(_Out):
    """A page of the ledger; pass ``next_cursor`` back as ``cursor``."""

    events: list[EventOut]
    next_cursor: int | None


class WindowOut(_Out):
    """A window in its mapping form."""

    kind: str = Field(description="day, week, month, year, rolling, billing or lifetime")
    tz: str | None = None
    seconds: int | None = None
    anchor: str | None = None
    cycle: str | None = None
    start: str | None = None
    end: str | None = None


class BudgetDisplay(_Out):
    """A budget's limit in human units (currency's usual decimals, seconds, tokens)."""

    limit: str | None


class AutoTopUpOut(_Out):
    """A credit pool's automatic top-up, in human units of its meter: when a commit
    leaves a member's credit below ``threshold``, buy ``amount`` (or up to ``target``),
    at most ``monthly_cap`` a month."""

    threshold: str
    amount: str | None
    target: str | None
    monthly_cap: str | None


class RecurringGrantOut(_Out):
    """A grant a credit pool gives each member every period, in human units of its meter."""

    amount: str
    every: WindowOut = Field(description="The period: day, week, month or year")
    kind: str
    priority: int
    expires: bool = Field(description="Whether it is gone at the period's end")


class BudgetOut(_Out):
    """A budget in spec form (human units, as the input takes it), with its ``unit`` and
    its limit as an integer in that unit (``limit_units``)."""

    id: str
    tenant: str | None
    name: str | None
    meter: str
    window: WindowOut
    limit: str | None = Field(description="Human units: currency units, seconds, tokens")
    match: dict[str, list[str]]
    exclude: dict[str, list[str]]
    per: str | None
    soft: list[str]
    at_limit: str
    mode: str
    overrides: bool
    enabled: bool
    failure: str
    currency: str | None
    policy: str | None
    protected: bool
    credits: bool = Field(description="A credit pool: calls draw its grants once the limit is used")
    auto_topup: AutoTopUpOut | None = Field(None, description="A credit pool's automatic top-up")
    recurring_grants: list[RecurringGrantOut] = Field(
        [], description="A credit pool's grants given each member every period"
    )
    unit: Unit = Field(description=_UNIT)
    limit_units: int | None = Field(description="``limit`` in ``unit``")
    display: BudgetDisplay = Field(description=_DISPLAY)


class BudgetsOut(_Out):
    """Budgets in spec form (human units)."""

    budgets: list[BudgetOut]


class PlanBudgetOut(_Out):
    """One budget template of a plan, in spec form (human units, as the input takes it).

    The plan sets its tenant and ``per``; its budget is ``<plan>.<id>`` in decisions
    and status, counted on the slot ``id`` that the tenant's plans share.
    """

    id: str = Field(description="The slot: the template's id within the plan")
    name: str | None
    meter: str
    window: WindowOut
    limit: str | None = Field(
        None, description="Human units; none: unlimited (metered only), or a share"
    )
    share: str | None = Field(
        None, description="Instead of a limit: this share of the plan's quota of the meter"
    )
    match: dict[str, list[str]]
    exclude: dict[str, list[str]]
    soft: list[str]
    at_limit: str
    mode: str
    overrides: bool
    enabled: bool
    failure: str
    currency: str | None
    policy: str | None
    protected: bool
    credits: bool
    auto_topup: AutoTopUpOut | None = None
    recurring_grants: list[RecurringGrantOut] = []


class PlanOut(_Out):
    """A plan (tier): a named, versioned template of budgets counted per member of ``per``."""

    id: str
    tenant: str | None = Field(description="The owning tenant; none: deployment-wide")
    name: str | None
    per: str = Field(description="The dimension whose members each get the plan's budgets")
    default: bool = Field(description="The plan of the tenant's members without an assignment")
    version: int = Field(description="1 when created, one more at each change")
    budgets: list[PlanBudgetOut]
    key: str = Field(
        description="Where it is stored: ``tenant#id``, or the id when deployment-wide"
    )


class PlansOut(_Out):
    """Plans."""

    plans: list[PlanOut]


class AssignmentOut(_Out):
    """A member's plan, assigned server-side; it applies from the member's next request."""

    tenant: str
    member: str
    plan: str
    assigned_at: str = Field(description="ISO 8601")
    epoch: int = Field(description="How many ``reset`` assignments the member has had")
    usage: Literal["carry", "reset"] = Field(
        description="carry: the current windows' use was kept; reset: started afresh"
    )


class ConfigOut(_Out):
    """What a budgets file applied: its budgets and its plans, as stored."""

    budgets: list[BudgetOut]
    plans: list[PlanOut] = []


class RateOut(_Out):
    """An exchange rate: one ``source`` is worth ``rate`` ``target`` from ``effective_from``."""

    source: str
    target: str
    rate: str = Field(description="Decimal text")
    effective_from: str = Field(description="ISO 8601")


class RatesOut(_Out):
    """Every exchange rate, by pair and effective time."""

    rates: list[RateOut]


class KeyOut(_Out):
    """A key (its ``secret`` only in the response that created it)."""

    id: str
    role: str
    tenant: str | None
    name: str | None
    created_at: str
    revoked_at: str | None
    last_used_at: str | None
    secret: str | None = None


class KeysOut(_Out):
    """Keys, never their secrets."""

    keys: list[KeyOut]


class GrantDisplay(_Out):
    """A grant's amount in human units."""

    amount: str


class GrantBalanceDisplay(GrantDisplay):
    """A grant's amounts in human units."""

    used: str
    reserved: str
    available: str


_GRANT_KINDS = Literal["purchase", "promotional", "top_up", "adjustment"]


class _GrantFields(_Out):
    id: str
    member: str = Field(description="The pool member it belongs to (empty: the whole pool)")
    amount: int = Field(description="In the pool's ``unit``")
    kind: _GRANT_KINDS
    priority: int = Field(description="Lower burns first")
    effective_at: str = Field(description="ISO 8601: it counts from then")
    expires_at: str | None = Field(description="ISO 8601: it counts until then")
    idempotency_key: str | None = Field(description="The payment id it was added under")
    metadata: dict[str, str]
    created_at: str
    voided_at: str | None


class GrantOut(_GrantFields):
    """A grant of a credit pool: never edited, only voided (or another one added)."""

    pool: str = Field(description="The pool's (its budget's) id")
    tenant: str | None
    unit: Unit = Field(description=_UNIT)
    currency: str | None = Field(description="The currency of a cost pool")
    display: GrantDisplay = Field(description=_DISPLAY)


class AddedGrantOut(GrantOut):
    """The grant a ``POST`` added (201), or had added before under its idempotency key
    or id (200, ``replayed``)."""

    replayed: bool


class PoolGrantOut(_GrantFields):
    """A grant, with what calls have drawn (``used``), hold (``reserved``) and what is
    left to draw now (``available``: 0 once it has expired or been voided)."""

    used: int
    reserved: int
    available: int
    display: GrantBalanceDisplay = Field(description=_DISPLAY)


class TopUpOut(_Out):
    """One auto top-up of a pool member: ``pending`` (being paid; after a decline, again
    at ``next_attempt_at``), ``succeeded`` (its grant is ``grant_id``), ``failed`` (auto
    top-up is paused until resumed) or ``resumed``."""

    id: str
    member: str
    amount: int = Field(description="In the pool's ``unit``")
    state: Literal["pending", "succeeded", "failed", "resumed"]
    attempts: int = Field(description="Payment attempts so far")
    created_at: str
    updated_at: str
    next_attempt_at: str | None
    error: str | None = Field(description="What the gateway said when it did not pay")
    grant_id: str | None


class PoolAutoTopUpOut(_Out):
    """A pool's auto top-up in its ``unit``: when a commit leaves the member's credit
    below ``threshold``, buy ``amount`` (or up to ``target``), at most ``monthly_cap`` a
    month; ``status`` says why it is not buying, if it is not."""

    threshold: int
    amount: int | None
    target: int | None
    monthly_cap: int | None
    status: Literal["auto_topup_failed", "auto_topup_monthly_limit_reached"] | None = Field(
        description="auto_topup_failed: a payment failed, paused until resumed; "
        "auto_topup_monthly_limit_reached: another top-up would pass ``monthly_cap``"
    )
    latest: TopUpOut | None = Field(description="The member's latest top-up")


class PoolDisplay(_Out):
    """A pool member's credit and debt in human units."""

    available: str
    debt: str


class PoolOut(_Out):
    """Where a pool member's credit stands: its grants in burn order, what they have
    left in all (``available``) and the debt the next grant repays first."""

    pool: str = Field(description="The pool's (its budget's) id")
    tenant: str | None
    member: str = Field(description="The member (empty: the whole pool)")
    meter: str
    unit: Unit = Field(description=_UNIT)
    currency: str | None = Field(description="The currency of a cost pool")
    available: int
    debt: int
    grants: list[PoolGrantOut]
    auto_topup: PoolAutoTopUpOut | None = Field(description="None: the pool has no auto top-up")
    display: PoolDisplay = Field(description=_DISPLAY)


class ResumedOut(_Out):
    """Whether auto top-up was paused and is now re-enabled (false: nothing changed)."""

    resumed: bool


class CreditEntryDisplay(_Out):
    """A credit entry's amounts in human units."""

    amount: str
    balance: str


class CreditEntryOut(_Out):
    """One movement of credit, with the member's balance (credit less debt) after it."""

    id: int | None
    member: str
    kind: Literal["grant", "debit", "refund", "expiry", "void", "debt", "repayment",
                  "topup_started", "topup_declined", "topup_failed", "topup_resumed"]  # fmt: skip
    amount: int = Field(description="Positive; ``kind`` says which way it moved")
    balance: int
    at: str
    grant_id: str | None
    request_id: str | None = Field(description="The call that moved it, if one did")
    unit: Unit = Field(description=_UNIT)
    currency: str | None = Field(description="The currency of a cost pool")
    display: CreditEntryDisplay = Field(description=_DISPLAY)


class CreditPage(_Out):
    """A page of a pool's credit ledger, oldest first; pass ``next_after_id`` back as
    ``after_id`` (None: the last page)."""

    pool: str
    tenant: str | None
    entries: list[CreditEntryOut]
    next_after_id: int | None


class PricesOut(PriceOut):
    """What 1,000,000 input plus 1,000,000 output tokens of a model cost, and the source.

    ``source`` is ``none`` when the deployment prices nothing."""

    provider: str
    model: str


class HealthOut(_Out):
    """Liveness or readiness."""

    status: str


class RefusalDisplayTop(_Out):
    """What is left, and the limit, in human units."""

    remaining: str
    limit: str


class RefusalDetail(_Out):
    """A refused authorization: what an end user can be shown, and the whole decision.

    ``budget_exceeded`` names the budget, the reason, what is left, the limit (in
    ``unit``, of ``currency`` for cost) and when the window resets;
    ``credits_exhausted`` is the same for a credit pool whose allowance and grants
    together cannot cover the call, and names the ``pool``; when that pool's auto
    top-up cannot help, the code says why instead: ``auto_topup_failed`` (a failed
    payment paused it) or ``auto_topup_monthly_limit_reached``. ``unknown_model``
    and ``no_budget`` have no budget. A 429's ``rate_limited`` and
    ``concurrency_limited`` say in ``retry_at`` when the call can fit;
    ``estimate_exceeds_limit`` (402) is a call larger than such a limit itself.
    """

    code: Literal[
        "budget_exceeded",
        "credits_exhausted",
        "auto_topup_failed",
        "auto_topup_monthly_limit_reached",
        "unknown_model",
        "no_budget",
        "rate_limited",
        "concurrency_limited",
        "estimate_exceeds_limit",
    ]
    message: str = Field(description="A message an end user can be shown")
    reason: str
    budget_id: str | None = None
    pool: str | None = Field(None, description="a credit pool's refusal: the pool (its budget id)")
    remaining: int | None = None
    limit: int | None = None
    unit: Unit | None = Field(None, description=_UNIT)
    currency: str | None = None
    display: RefusalDisplayTop | None = Field(None, description=_DISPLAY)
    resets_at: str | None = None
    retry_at: str | None = Field(None, description="429: when the call can fit")
    routes: list[SkippedOut] | None = Field(
        None, description="With route candidates: every one, with its reason"
    )
    decision: DecisionOut


class RefusalBody(_Out):
    """402 or 429: the authorization was refused."""

    error: RefusalDetail
