"""What request bodies hold, described for the OpenAPI document.

The routes hand subjects, usage figures and budget specs to the Governor as
the JSON objects they are; the Governor checks them and names the bad field
(``subject.tenant``, ``estimate.output_tokens``, ``events[0].usage.cost``),
alike on the lean path and the FastAPI routes. The models below describe those
objects in the document only (pydantic's ``WithJsonSchema``): what a body may
hold is decided in one place, and the hot path validates nothing twice.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Body
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import WithJsonSchema

from allotment.api.schemas import Unit
from allotment.core.money import MAX_AMOUNT

__all__ = [
    "Changes",
    "Config",
    "EstimateObject",
    "PlanSpec",
    "Rate",
    "Roles",
    "Spec",
    "SubjectObject",
    "UsageObject",
]

_NAME = "1-256 printable characters"
_Decimal = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _no_default(schema: dict[str, Any]) -> None:
    """Leave a field's default out of the document (it may be absent, never null)."""
    schema.pop("default", None)


def _count(description: str, default: int = 0) -> Any:
    return Field(default, ge=0, le=MAX_AMOUNT, description=description)


def _human(description: str) -> Any:
    return Field(None, json_schema_extra=_no_default, description=description)


def _inline(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its nested models written in place (an OpenAPI
    document has no ``$defs`` of its own to point into)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return dict(resolve(schema))


class SubjectIn(_In):
    """Who a call is attributed to: the tenant, and any other dimensions it has."""

    tenant: str = Field(min_length=1, max_length=256, description="The unit of isolation")
    user: str | None = Field(None, description=_NAME)
    groups: list[str] | None = Field(None, description="Groups the user is in")
    key: str | None = Field(None, description="A provider key's label (e.g. its suffix)")
    agent: str | None = None
    session: str | None = None
    feature: str | None = None
    device: str | None = Field(None, description="Stored hashed")
    install: str | None = None
    tags: dict[str, str] | None = Field(
        None, description="NAME: VALUE; names holding key, token, secret or password are dropped"
    )


class UsageIn(_In):
    """What a call used (or is estimated to use): non-negative integers.

    ``input_tokens`` counts every input token (cached, cache-write and audio ones
    are parts of it); ``output_tokens`` likewise. Audio and cost may also be given
    in human units: ``audio_seconds`` and ``cost`` (decimal strings).
    """

    input_tokens: int = _count("Every input token")
    output_tokens: int = _count("Every output token")
    cached_input_tokens: int = _count("Part of input_tokens read from the cache")
    cache_write_tokens: int = _count("Part of input_tokens written to the cache")
    reasoning_tokens: int = _count("Part of output_tokens")
    input_audio_tokens: int = _count("Part of input_tokens")
    output_audio_tokens: int = _count("Part of output_tokens")
    audio_ms: int = _count("Audio, in milliseconds")
    images: int = _count("Images")
    requests: int = _count("Requests (default 1)", 1)
    credits: int = _count("Credits")
    cost_micros: int | None = Field(
        None, ge=0, le=MAX_AMOUNT, description="The cost in micro-units, if known (else priced)"
    )
    audio_seconds: _Decimal | int = _human("Audio in seconds (ms resolution), not audio_ms")
    cost: _Decimal | int = _human("The cost in currency units, instead of cost_micros")


class WindowIn(_In):
    """A window as a mapping (a billing period, or a calendar window in a zone)."""

    kind: Literal["day", "week", "month", "year", "rolling", "billing", "lifetime"]
    tz: str | None = Field(None, description="IANA zone, default UTC")
    seconds: int | None = Field(None, description="rolling: its length")
    anchor: str | None = Field(None, description="billing: an ISO 8601 instant with offset")
    cycle: Literal["day", "week", "month", "year"] | None = None
    start: str | None = Field(None, description="billing: ISO 8601 with offset")
    end: str | None = Field(None, description="billing: ISO 8601 with offset")


class AutoTopUpIn(_In):
    """Buy credit for a pool member when a commit leaves it below ``threshold`` (human
    units of the pool's meter): ``amount`` each time, or up to ``target`` (one of the
    two), at most ``monthly_cap`` a month."""

    threshold: str | int
    amount: str | int | None = None
    target: str | int | None = None
    monthly_cap: str | int | None = None


class RecurringGrantIn(_In):
    """A grant a credit pool gives each member every period (human units of its meter)."""

    amount: str | int
    every: str | WindowIn = Field("month", description="day, week, month or year")
    kind: Literal["purchase", "promotional", "top_up", "adjustment"] = "promotional"
    priority: int = 0
    expires: bool = Field(True, description="Gone at the period's end")


_Selector = dict[str, str | list[str]]
_Percents = list[str | int | float] | str | int | float


class BudgetIn(_In):
    """A budget in spec form, human units (README: Budgets).

    ``unit``, ``limit_units`` and ``display``, which answers add, may be sent
    back: each must agree with the budget the rest of the body makes.
    """

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$")
    meter: Literal[
        "tokens",
        "input_tokens",
        "output_tokens",
        "cost",
        "requests",
        "audio_seconds",
        "credits",
        "concurrency",
    ]
    window: str | WindowIn = Field(
        description="day, week, month, year (each with @Zone), rolling:15m, lifetime, or a mapping"
    )
    limit: str | int | None = Field(
        None, description="Hard limit in human units: currency units, seconds, tokens; none: meter"
    )
    tenant: str | None = Field(None, description="Owning tenant; none: deployment-wide")
    name: str | None = None
    match: _Selector | None = Field(None, description="dimension: value or [values], * globs")
    exclude: _Selector | None = None
    per: str | None = Field(None, description="Count each value of this dimension apart")
    soft: _Percents | None = Field(None, description="Warning thresholds in percent (default 80)")
    at_limit: str | int | float | None = Field(None, description="Percent (default 95)")
    mode: Literal["enforce", "warn", "shadow", "off"] = "enforce"
    overrides: bool = False
    enabled: bool = True
    failure: Literal["fail_closed", "fail_open"] = "fail_closed"
    currency: str | None = Field(None, pattern="^[A-Z]{3}$", description="Of a cost budget")
    policy: str | None = None
    protected: bool = False
    credits: bool = Field(
        False,
        description="A credit pool: once the limit is used, calls draw on its grants "
        "(POST /v1/pools/{id}/grants); needs a limit (0: grants only) and mode enforce",
    )
    auto_topup: AutoTopUpIn | None = Field(None, description="A credit pool's automatic top-up")
    recurring_grants: list[RecurringGrantIn] | None = Field(
        None, description="A credit pool's grants given each member every period"
    )
    unit: Unit | None = Field(None, description="As answered; must agree")
    limit_units: int | None = Field(None, description="As answered; must agree")
    display: dict[str, Any] | None = Field(None, description="As answered; must agree")


def _optional(schema: dict[str, Any]) -> None:
    """Every field may be left out, and one left out keeps its value (no defaults)."""
    schema.pop("required", None)
    for field in schema["properties"].values():
        field.pop("default", None)


class BudgetChangesIn(BudgetIn):
    """Fields of a budget to change (spec form, human units); the others stay."""

    model_config = ConfigDict(json_schema_extra=_optional)


class RateIn(_In):
    """An exchange rate (README: Budgets in other currencies)."""

    source: str = Field(pattern="^[A-Z]{3}$")
    target: str = Field(pattern="^[A-Z]{3}$")
    rate: str | int = Field(description="Units of target per unit of source, decimal text")
    effective_from: str | None = Field(None, description="ISO 8601 with offset; default: now")


#: a plan's id, and its templates' (no ".": a plan's budget is ``<plan>.<template id>``)
_PLAN_ID = r"^[A-Za-z0-9][A-Za-z0-9_:@/-]{0,63}$"
#: what a plan sets on its templates, and what only answers carry
_NOT_IN_TEMPLATES = ("tenant", "per", "unit", "limit_units", "display")


def _template(schema: dict[str, Any]) -> None:
    for name in _NOT_IN_TEMPLATES:
        schema["properties"].pop(name, None)


class PlanBudgetIn(BudgetIn):
    """A plan's budget template: a budget in spec form without ``tenant`` and ``per``
    (the plan's); its ``id`` names the slot (README: Plans)."""

    model_config = ConfigDict(json_schema_extra=_template)
    id: str = Field(pattern=_PLAN_ID)


class PlanIn(_In):
    """A plan (tier): budget templates counted per member of ``per`` (README: Plans).

    ``PUT /v1/plans/{plan_id}`` takes it without ``id`` (or with the same one);
    ``version`` and ``key``, which answers carry, may be sent back (``key`` must agree).
    """

    id: str | None = Field(
        None, pattern=_PLAN_ID, description="As in the path (in a config: required)"
    )
    tenant: str | None = Field(None, description="Owning tenant; none: deployment-wide")
    name: str | None = None
    per: str = Field(description="install, user, ... or tags.NAME: whose budgets these are")
    default: bool = Field(False, description="The plan of members without an assignment")
    version: int | None = Field(None, ge=1, description="As answered (the store sets it)")
    key: str | None = Field(None, description="As answered; must agree")
    budgets: list[PlanBudgetIn]


class ConfigIn(_In):
    """A budgets file as JSON: its rates, then its budgets and plans, applied at once."""

    rates: list[RateIn] = []
    budgets: list[BudgetIn] = []
    plans: list[PlanIn] = []


_PROVIDER_USAGE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": True,
    "title": "ProviderUsage",
    "description": "With ``usage_from``: the provider's usage object, as the provider returned it",
}
_SUBJECT = _inline(SubjectIn)
_USAGE = _inline(UsageIn)

#: a subject object (checked by the Governor)
SubjectObject = Annotated[dict[str, Any], WithJsonSchema(_SUBJECT)]
#: an estimate: usage figures
EstimateObject = Annotated[dict[str, Any], WithJsonSchema(_USAGE)]
#: usage figures, or with ``usage_from`` the provider's own usage object
UsageObject = Annotated[dict[str, Any], WithJsonSchema({"anyOf": [_USAGE, _PROVIDER_USAGE]})]
#: a budget to create (``POST /v1/budgets``)
Spec = Annotated[dict[str, Any], Body(), WithJsonSchema(_inline(BudgetIn))]
#: fields of a budget to change (``PATCH /v1/budgets/{id}``)
Changes = Annotated[dict[str, Any], Body(), WithJsonSchema(_inline(BudgetChangesIn))]
#: an exchange rate to set (``POST /v1/rates``)
Rate = Annotated[dict[str, Any], Body(), WithJsonSchema(_inline(RateIn))]
#: a plan to create or replace (``PUT /v1/plans/{plan_id}``)
PlanSpec = Annotated[dict[str, Any], Body(), WithJsonSchema(_inline(PlanIn))]
#: rates, budgets and plans to apply at once (``POST /v1/config``)
Config = Annotated[dict[str, Any], Body(), WithJsonSchema(_inline(ConfigIn))]
#: a key's role, documented as the four there are (the Governor checks it)
Roles = Annotated[
    str,
    WithJsonSchema({"type": "string", "enum": ["admin", "tenant_admin", "service", "viewer"]}),
]
