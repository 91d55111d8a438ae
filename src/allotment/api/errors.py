"""allotment's errors as HTTP responses: the only place status codes are chosen.

Every error body is ``{"error": {"code": ..., "message": ..., ...details}}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from allotment.api import ratelimit
from allotment.api.instruments import STORE_ERRORS
from allotment.api.responses import Json
from allotment.core.decisions import Decision, Reason, Refusal
from allotment.core.topups import USER_MESSAGES
from allotment.errors import (
    AccessDenied,
    AllotmentError,
    BudgetExceeded,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    StoreError,
    ValidationError,
)

__all__ = ["ApiError", "PayloadTooLarge", "error", "error_response", "install", "internal_error",
           "invalid_shape", "refusal_response"]  # fmt: skip


class ApiError(Exception):
    """An error the API raises itself (authentication, a field it checks); refusals of a
    key's role or tenant are ``allotment.access``'s ``AccessDenied``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class PayloadTooLarge(HTTPException):
    """A body over the limit. An ``HTTPException`` so that FastAPI, reading a body,
    lets it through as it is (any other error there becomes its own 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body exceeds {limit} bytes")


def error(
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    **details: Any,
) -> Json:
    """A JSON error response in the contract's shape."""
    return Json({"error": {"code": code, "message": message, **details}}, status, headers)


def refusal_response(
    decision: Decision, currency: str | None = None, now: datetime | None = None
) -> Json:
    """402 for a refused authorization, with what an end user can be shown; 429 when
    only rate or concurrency limits refused it, with ``Retry-After``.

    ``budget_exceeded`` names the budget; ``credits_exhausted``, when a credit pool's
    allowance and grants cannot cover the call, names it as ``pool`` too.
    ``currency`` is the ledger's, named by cost budgets that have none of their own.
    ``now`` (default: the clock) is when the rate-limit headers count from.
    """
    refusal = decision.refusals[0]
    answer = decision.to_dict(currency=currency)
    # With route candidates, every one's reason.
    details: dict[str, Any] = {"routes": answer["skipped"]} if decision.skipped else {}
    if refusal.reason is Reason.UNKNOWN_MODEL and not decision.skipped:
        return error(402, "unknown_model", "This model has no price and is not allowed.",
                     reason=refusal.reason.value, decision=answer)  # fmt: skip
    if refusal.reason is Reason.NO_BUDGET and not decision.skipped:
        return error(402, "no_budget", "No budget covers this call; such calls are denied.",
                     reason=refusal.reason.value, decision=answer)  # fmt: skip
    limited = decision.limited
    refusal = decision.refusal[0]  # for a call worth retrying, the one it waits on
    resets = refusal.resets_at.isoformat() if refusal.resets_at else None
    if limited:
        code, message = refusal.reason.value, _LIMITED[refusal.reason]
    else:
        code, message, found = _exceeded(decision, refusal, resets)
        details |= found
    if decision.skipped:
        reasons = "; ".join(f"{s.route.label}: {s.refusals[0].reason.value}"
                            for s in decision.skipped if s.refusals)  # fmt: skip
        message = f"No route can take this request ({reasons})."
    first = decision.refusal_dict(currency=currency)
    shown = first["display"] and {"remaining": first["display"]["remaining"],
                                  "limit": first["display"]["limit"]}  # fmt: skip
    retry_at = decision.retry_at
    return error(
        429 if limited else 402,
        code,
        message,
        **details,
        budget_id=refusal.budget_id,
        reason=refusal.reason.value,
        remaining=refusal.remaining,
        limit=refusal.limit,
        unit=first["unit"],
        currency=first["currency"],
        display=shown,
        resets_at=resets,
        retry_at=None if retry_at is None else retry_at.isoformat(),
        decision=answer,
        headers=ratelimit.headers(decision, now or datetime.now(UTC)),
    )


#: what an end user is told of a refusal by a limit that passes by itself
_LIMITED = {
    Reason.RATE_LIMITED: "Too many requests for now; retry after the time given.",
    Reason.CONCURRENCY_LIMITED: "Every slot is in use; retry when one frees up.",
}


def _exceeded(
    decision: Decision, refusal: Refusal, resets: str | None
) -> tuple[str, str, dict[str, Any]]:
    """The code and end-user message of a refusal over a budget, and for a credit pool
    the ``pool`` it names. A pool whose auto top-up failed or reached its monthly cap
    says so: ``auto_topup_failed`` / ``auto_topup_monthly_limit_reached``."""
    if refusal.reason is Reason.CREDITS_EXHAUSTED:
        for view in decision.budgets:
            if view.budget.id == refusal.budget_id and view.credit and view.credit.topup:
                topup = view.credit.topup
                return topup.value, USER_MESSAGES[topup], {"pool": refusal.budget_id}
        message = "This request needs more credit than is left (allowance and prepaid credit)."
        message += f" The allowance renews at {resets}." if resets else ""
        return "credits_exhausted", message, {"pool": refusal.budget_id}
    if refusal.reason is Reason.ESTIMATE_EXCEEDS_LIMIT:
        message = "This request is larger than the limit allows at once; retrying cannot help."
        return refusal.reason.value, message, {}
    message = "This request would exceed the budget."
    return "budget_exceeded", message + (f" It resets at {resets}." if resets else ""), {}


def internal_error() -> Json:
    """500 for a failure nobody foresaw: the caller learns nothing of the internals."""
    return error(500, "internal_error", "the service failed to answer this request")


def invalid_shape(errors: Sequence[Any]) -> Json:
    """422 for a body that does not fit its model, naming the first bad field
    (``events[0].occurred_at``, as the Governor names fields).

    Bad JSON and a body that is no object are worded here, alike for the lean
    path (pydantic's JSON mode, no location) and the FastAPI routes (python
    mode; for bad JSON the location is an offset).
    """
    first: Mapping[str, Any] = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    kind, message = first.get("type"), first.get("msg")
    field = _field(first.get("loc", ())) or "body"
    if kind == "json_invalid":
        field, message = "body", f"Invalid JSON: {first.get('ctx', {}).get('error')}"
    elif field == "body" and kind in ("model_type", "model_attributes_type"):
        message = "Input should be an object"
    return error(422, "invalid_request", f"{field}: {message}", field=field)


def _field(loc: Sequence[str | int]) -> str:
    """A pydantic location as the Governor names fields: ``events[0].usage``."""
    field = ""
    for part in loc:
        if isinstance(part, int):
            field += f"[{part}]"
        elif part not in ("body", "query"):
            field += f".{part}" if field else part
    return field


def error_response(exc: Exception) -> Json | None:
    """The response for an error allotment raises (None: not one of ours)."""
    match exc:
        case ApiError(field=None):
            return error(exc.status, exc.code, exc.message)
        case ApiError():
            return error(exc.status, exc.code, exc.message, field=exc.field)
        case AllotmentError():
            return _library_error(exc)
        case RequestValidationError():
            return invalid_shape(exc.errors())
        case PayloadTooLarge():
            return error(413, "payload_too_large", str(exc.detail))
        case HTTPException():  # FastAPI's own: 404, 405 (with its Allow header)
            code = "not_found" if exc.status_code == 404 else "http_error"
            return error(exc.status_code, code, str(exc.detail), headers=exc.headers)
    return None


def _library_error(exc: AllotmentError) -> Json | None:
    """The response for one of the library's own errors (``allotment.errors``)."""
    match exc:
        case AccessDenied():  # allotment.access refused the key its role or tenant
            return error(403, "forbidden", str(exc))
        case ValidationError():
            return error(422, "invalid_request", str(exc), field=exc.field)
        case NotFoundError():
            return error(404, "not_found", str(exc))
        case ConflictError():
            return error(409, "conflict", str(exc))
        case BudgetExceeded():
            return refusal_response(exc.decision)
        case StoreError():
            STORE_ERRORS.inc()
            return error(503, "store_unavailable", "the store cannot be reached")
        case ConfigurationError():
            return error(422, "configuration", str(exc))
    return None


def install(app: FastAPI) -> None:
    """Map every error allotment raises to its status code."""

    async def handle(request: Request, exc: Exception) -> Json:
        response = error_response(exc)
        assert response is not None  # registered below for exactly these types
        return response

    for kind in (ApiError, AccessDenied, ValidationError, RequestValidationError, NotFoundError,
                 ConflictError, BudgetExceeded, StoreError, ConfigurationError,
                 HTTPException):  # fmt: skip
        app.add_exception_handler(kind, handle)
