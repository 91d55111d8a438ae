"""allotment's errors as HTTP responses: the only place status codes are chosen.

Every error body is ``{"error": {"code": ..., "message": ..., ...details}}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from allotment.api.instruments import STORE_ERRORS
from allotment.api.responses import Json
from allotment.core.decisions import Decision, Reason
from allotment.errors import (
    BudgetExceeded,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    StoreError,
    ValidationError,
)

__all__ = ["ApiError", "error_response", "install", "invalid_shape", "refusal_response"]


class ApiError(Exception):
    """An error the API raises itself (authentication, permissions)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error(status: int, code: str, message: str, **details: Any) -> Json:
    """A JSON error response in the contract's shape."""
    return Json({"error": {"code": code, "message": message, **details}}, status)


def refusal_response(decision: Decision) -> Json:
    """402 for a refused authorization, with what an end user can be shown."""
    refusal = decision.refusals[0]
    if refusal.reason is Reason.UNKNOWN_MODEL:
        return error(402, "unknown_model", "This model has no price and is not allowed.",
                     reason=refusal.reason.value, decision=decision.to_dict())  # fmt: skip
    if refusal.reason is Reason.NO_BUDGET:
        return error(402, "no_budget", "No budget covers this call; such calls are denied.",
                     reason=refusal.reason.value, decision=decision.to_dict())  # fmt: skip
    resets = refusal.resets_at.isoformat() if refusal.resets_at else None
    message = "This request would exceed the budget." + (
        f" It resets at {resets}." if resets else ""
    )
    return error(
        402,
        "budget_exceeded",
        message,
        budget_id=refusal.budget_id,
        reason=refusal.reason.value,
        remaining=refusal.remaining,
        resets_at=resets,
        decision=decision.to_dict(),
    )


def invalid_shape(errors: Sequence[Any]) -> Json:
    """422 for a body that does not fit its model, naming the first bad field."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query")]
    field = ".".join(loc) or "body"
    return error(422, "invalid_request", f"{field}: {first.get('msg')}", field=field)


def error_response(exc: Exception) -> Json | None:
    """The response for an error allotment raises (None: not one of ours)."""
    match exc:
        case ApiError():
            return error(exc.status, exc.code, exc.message)
        case ValidationError():
            return error(422, "invalid_request", str(exc), field=exc.field)
        case RequestValidationError():
            return invalid_shape(exc.errors())
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
        case HTTPException():
            code = "not_found" if exc.status_code == 404 else "http_error"
            return error(exc.status_code, code, str(exc.detail))
    return None


def install(app: FastAPI) -> None:
    """Map every error allotment raises to its status code."""

    async def handle(request: Request, exc: Exception) -> Json:
        response = error_response(exc)
        assert response is not None  # registered below for exactly these types
        return response

    for kind in (ApiError, ValidationError, RequestValidationError, NotFoundError, ConflictError,
                 BudgetExceeded, StoreError, ConfigurationError, HTTPException):  # fmt: skip
        app.add_exception_handler(kind, handle)
