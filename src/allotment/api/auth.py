"""Who is calling: bearer API keys, roles, and the tenant a request may touch.

Isolation (invariant 4) is enforced here for every request: a key of one
tenant can only name its own tenant, and the store additionally scopes
commit and release by tenant so a guessed request id of another tenant looks
like no request at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from allotment.api.errors import ApiError
from allotment.core.keys import ApiKey, Role
from allotment.governor import Governor

__all__ = ["BEARER", "Caller", "CallerDep", "GovernorDep", "governor_of"]

#: what each role may do
_WRITE_USAGE = {Role.ADMIN, Role.TENANT_ADMIN, Role.SERVICE}
_READ = {Role.ADMIN, Role.TENANT_ADMIN, Role.VIEWER}
_MANAGE = {Role.ADMIN, Role.TENANT_ADMIN}


def governor_of(request: Request) -> Governor:
    """The app's governor."""
    governor: Governor = request.app.state.governor
    return governor


async def _governor_dependency(request: Request) -> Governor:
    return governor_of(request)


#: the app's governor as a route dependency (async: no thread-pool hop)
GovernorDep = Annotated[Governor, Depends(_governor_dependency)]


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated key."""

    key: ApiKey

    @property
    def admin(self) -> bool:
        """Whether this key may touch every tenant."""
        return self.key.role is Role.ADMIN

    def tenant(self, wanted: str | None) -> str:
        """The tenant a request acts on: its own, or for admins the one named."""
        if self.admin:
            if wanted is None:
                message = "tenant: an admin key must name the tenant"
                raise ApiError(422, "invalid_request", message, "tenant")
            return wanted
        assert self.key.tenant is not None
        if wanted is not None and wanted != self.key.tenant:
            raise ApiError(403, "forbidden", "this key belongs to another tenant")
        return self.key.tenant

    def scope(self) -> str | None:
        """The tenant this key is confined to (None for admins)."""
        return None if self.admin else self.key.tenant

    def may_write_usage(self) -> None:
        """Authorize, commit, release, record."""
        self._need(_WRITE_USAGE)

    def may_read(self, *, status: bool = False) -> None:
        """Read status, usage, the ledger, budgets (service keys: status only)."""
        self._need(_READ | ({Role.SERVICE} if status else set()))

    def may_manage(self) -> None:
        """Change budgets and keys."""
        self._need(_MANAGE)

    def _need(self, roles: set[Role]) -> None:
        if self.key.role not in roles:
            raise ApiError(403, "forbidden", f"a {self.key.role.value} key may not do this")


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
