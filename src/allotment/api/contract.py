"""What each route may answer, as ``responses=`` for the OpenAPI document.

The shapes are the models of ``allotment.api.schemas``; here they are tied to
status codes, headers and media types.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from allotment.api.schemas import ErrorBody, RefusalBody

__all__ = ["BUDGET_HEADERS", "CSV", "ERRORS", "REFUSED", "documented"]


def documented(
    model: type[BaseModel], status: int = 200, *more: dict[int | str, dict[str, Any]]
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: its success shape, every error it can return, and
    ``more`` (``REFUSED``, ``CSV``), merged status by status."""
    out: dict[int | str, dict[str, Any]] = {status: {"model": model}, **ERRORS}
    for group in more:
        for code, spec in group.items():
            out[code] = out.get(code, {}) | spec
    return out


def _errors(*pairs: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": text} for code, text in pairs}


#: the error statuses any authenticated route may answer with
ERRORS: dict[int | str, dict[str, Any]] = _errors(
    (401, "no or unknown API key: ``Authorization: Bearer <api key>``"),
    (403, "wrong role or tenant"),
    (404, "not found"),
    (409, "request id (or a grant's idempotency key) reused with other terms, or id taken"),
    (413, "``payload_too_large``: a body over 16 MiB"),
    (422, "bad input; ``field`` names it"),
    (500, "``internal_error``: a failure nobody foresaw (logged)"),
    (503, "``store_unavailable``: the store cannot be reached (retry: request ids make it safe)"),
)

#: what authorize answers when it refuses
REFUSED: dict[int | str, dict[str, Any]] = {
    402: {
        "model": RefusalBody,
        "description": "refused: ``budget_exceeded``, ``credits_exhausted`` (a credit pool's "
        "allowance and grants cannot cover the call; ``auto_topup_failed`` or "
        "``auto_topup_monthly_limit_reached`` when its auto top-up cannot help), "
        "``estimate_exceeds_limit`` (larger than a rate or concurrency limit itself), "
        "``unknown_model`` or ``no_budget``",
    },
    429: {
        "model": RefusalBody,
        "description": "refused by rate or concurrency limits only: ``rate_limited`` (a "
        "budget over a rolling window is full until enough usage leaves it) or "
        "``concurrency_limited`` (every slot of a concurrency budget is held by a lease); "
        "``Retry-After`` says when the call can fit, and the body's ``retry_at`` the instant. "
        "A call larger than such a limit itself is a 402 ``estimate_exceeds_limit``",
        "headers": {
            "Retry-After": {"description": "Seconds", "schema": {"type": "integer"}},
            "RateLimit-Policy": {
                "description": "The binding limit (IETF draft)",
                "schema": {"type": "string"},
            },
            "RateLimit": {
                "description": "What it has left, and in how many seconds the call can fit",
                "schema": {"type": "string"},
            },
        },
    },
}


def _header(text: str) -> dict[str, Any]:
    return {"description": text, "schema": {"type": "string"}}


#: what a granted authorization says of its tightest enforced budget, in headers
BUDGET_HEADERS: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            "X-Budget-Id": _header("The tightest enforced budget"),
            "X-Budget-Remaining": _header("What it has left, an integer in X-Budget-Unit"),
            "X-Budget-Unit": _header("tokens, micros, ms, requests or credits"),
            "X-Budget-Currency": _header("For a cost budget: its currency"),
            "X-Budget-Percent-Used": _header("Used and reserved, in percent (two decimals)"),
            "X-Budget-Resets-At": _header("When its window resets (ISO 8601)"),
            "RateLimit-Policy": _header(
                'IETF draft: the binding budget, its quota and window: "day";q=1000;w=86400'
            ),
            "RateLimit": _header(
                'IETF draft: what it has left and when more frees up: "day";r=250;t=3600'
            ),
        }
    }
}

#: ``GET /v1/events?format=csv``
CSV: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": "id,request_id,status,occurred_at,tenant,user,feature,provider,"
                "model,input_tokens,output_tokens,cost_micros,currency,price_source,reason,"
                "budget_id\r\n",
            }
        },
        "description": "A page of the ledger: JSON, or with ``format=csv`` CSV "
        "(``cost_micros`` in micro-units of ``currency``)",
    }
}
