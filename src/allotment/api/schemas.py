"""Response shapes of the v1 API, for the OpenAPI document other languages code against.

They document what the routes return (the routes build plain JSON, so no
response pays for a second serialization); the Schemathesis run in the test
suite checks every real response against them. Extra fields are forbidden so
a drift between code and contract shows up there.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ERRORS", "documented"]


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


class BudgetViewOut(_Out):
    """One budget as it stands (``view=client`` leaves out the amounts)."""

    budget_id: str
    name: str | None
    meter: str
    percent: str | None
    percent_available: str | None
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
    window_start: str | None = None
    currency: str | None = None


class RefusalOut(_Out):
    """Why a budget refused (or would have)."""

    budget_id: str | None
    reason: str
    requested: int
    remaining: int
    limit: int
    resets_at: str | None


class WarningOut(_Out):
    """A soft threshold crossed, a warn-mode budget over its limit, or a flag no budget
    raised (``no_budget``, ``unknown_model``: no budget id, no percent)."""

    budget_id: str | None
    code: str
    percent: str | None
    threshold: str | None


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
    replayed: bool
    degraded: bool
    commit_with: dict[str, Any] | None = Field(
        None,
        description="For a degraded grant (the store was down): send these fields "
        "(subject, provider, model) with its commit so any worker meters it",
    )


class EventOut(_Out):
    """One ledger entry."""

    id: int | None
    request_id: str
    status: str
    subject: dict[str, Any]
    provider: str
    model: str
    usage: dict[str, int | None]
    estimate: dict[str, int | None] | None = Field(
        None, description="What a blocked or released call asked for (its usage is zero)"
    )
    currency: str
    price: dict[str, Any]
    reason: str | None
    budget_id: str | None
    occurred_at: str
    recorded_at: str


class AdjustmentOut(_Out):
    """Estimate against actual on one budget (negative difference: overshoot)."""

    budget_id: str
    member: str
    estimated: int
    actual: int
    difference: int


class OvershootOut(_Out):
    """How far a late commit took an enforced budget past its hard limit."""

    budget_id: str
    member: str
    meter: str
    amount: int


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


class UsageOut(_Out):
    """Grouped totals: ``group``, ``calls``, ``errors``, ``blocked`` and usage sums."""

    rows: list[dict[str, Any]]


class EventPage(_Out):
    """A page of the ledger; pass ``next_cursor`` back as ``cursor``."""

    events: list[EventOut]
    next_cursor: int | None


class BudgetsOut(_Out):
    """Budgets in spec form (human units)."""

    budgets: list[dict[str, Any]]


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


class HealthOut(_Out):
    """Liveness or readiness."""

    status: str


def documented(model: type[BaseModel], status: int = 200) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: its success shape and every error it can return."""
    return {status: {"model": model}, **ERRORS}


#: the error statuses any authenticated route may answer with
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (401, "no or unknown API key"),
        (402, "refused: budget_exceeded or unknown_model (authorize)"),
        (403, "wrong role or tenant"),
        (404, "not found"),
        (409, "request id reused with a different payload, or id taken"),
        (422, "bad input; the error names the field"),
        (503, "store_unavailable"),
    )
}
