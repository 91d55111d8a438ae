"""Who is calling: the bearer API key behind a request, as an ``allotment.access.Caller``.

What the key may see and change (its role, its tenant: isolation, invariant 4)
is ``allotment.access``'s to say; the store additionally scopes commit and
release by tenant so a guessed request id of another tenant looks like no
request at all.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from allotment.access import Caller
from allotment.api.errors import ApiError
from allotment.governor import Governor

__all__ = ["BEARER", "CallerDep", "GovernorDep", "authenticate", "caller_from", "governor_of"]


def governor_of(request: Request) -> Governor:
    """The app's governor."""
    governor: Governor = request.app.state.governor
    return governor


async def _governor_dependency(request: Request) -> Governor:
    return governor_of(request)


#: the app's governor as a route dependency (async: no thread-pool hop)
GovernorDep = Annotated[Governor, Depends(_governor_dependency)]


#: declares bearer keys in the OpenAPI document (so /docs can send one); it never
#: refuses: ``caller_from`` reads the header and decides
BEARER = HTTPBearer(
    scheme_name="bearer",
    description="An allotment API key: ``Authorization: Bearer ak_…``",
    auto_error=False,
)


async def authenticate(
    request: Request,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> Caller:
    """The caller behind ``Authorization: Bearer <key>``, or 401.

    Async on purpose: keys are cached by the governor, so this is cheap and a
    hop through the thread pool would cost more than the check itself.
    """
    return caller_from(request.headers.get("authorization", ""), governor_of(request))


def caller_from(header: str, governor: Governor) -> Caller:
    """The caller an ``Authorization`` header names, or 401."""
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret:
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <api key>")
    key = governor.authenticate(secret.strip())
    if key is None:
        raise ApiError(401, "unauthorized", "unknown or revoked API key")
    return Caller(key)


CallerDep = Annotated[Caller, Depends(authenticate)]
