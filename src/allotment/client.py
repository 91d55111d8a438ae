"""``Client`` / ``AsyncClient``: the Governor's methods, over HTTP.

Switching between in-process and remote is one setting::

    gov = Governor("sqlite:///allotment.db")            # in-process
    gov = Client("http://127.0.0.1:8080", api_key=KEY)  # the service

Answers are ``Record`` objects: the service's JSON with attribute access, so
``decision.allowed``, ``decision.refusals[0].reason`` or
``view.remaining`` read the same as on the Governor's objects (times stay ISO
strings). HTTP errors become allotment's own exceptions; a refused
authorization is returned (``allowed=False``), as the Governor does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Self

import httpx

from allotment.errors import (
    AccessDenied,
    AllotmentError,
    BudgetExceeded,
    ConflictError,
    NotFoundError,
    StoreError,
    ValidationError,
)
from allotment.governor import Hold

__all__ = ["AsyncClient", "Client", "Record"]


class Record(dict[str, Any]):
    """A JSON object whose keys read as attributes, recursively."""

    def __getattr__(self, name: str) -> Any:
        try:
            return _wrap(self[name])
        except KeyError:
            raise AttributeError(name) from None


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return Record(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class _Base:
    """Request building and response parsing shared by both clients."""

    def __init__(self, api_key: str) -> None:
        self._headers = {"Authorization": f"Bearer {api_key}"}
        #: what the commits of degraded grants must send (see ``Governor._degraded``)
        self._degraded: dict[str, dict[str, Any]] = {}

    def _granted(self, decision: Any) -> Any:
        """Remember what a degraded grant's commit needs, so a plain commit meters it."""
        commit_with = decision.get("commit_with") if decision.get("degraded") else None
        if commit_with:
            if len(self._degraded) >= 10_000:
                del self._degraded[next(iter(self._degraded))]
            self._degraded[decision["request_id"]] = commit_with
        return decision

    def _commit(self, request_id: str, usage: Any, fields: dict[str, Any]) -> dict[str, Any]:
        extra = self._degraded.get(request_id, {}) if "subject" not in fields else {}
        return {"request_id": request_id, "usage": usage, **extra, **fields}

    @staticmethod
    def _authorize(
        request_id: str,
        subject: Any,
        provider: str,
        model: str,
        estimate: Any,
        ttl: int | None,
        request: Any,
    ) -> dict[str, Any]:
        body = {
            "request_id": request_id,
            "subject": subject,
            "provider": provider,
            "model": model,
            "estimate": estimate,
            "ttl_seconds": ttl,
            "request": request,
        }
        return {k: v for k, v in body.items() if v is not None}

    @staticmethod
    def _parse(response: httpx.Response) -> Any:
        if response.status_code == 402:
            return Record(response.json()["error"]["decision"])
        if response.status_code >= 400:
            raise _error(response)
        return None if response.status_code == 204 else _wrap(response.json())


def _error(response: httpx.Response) -> AllotmentError:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return StoreError(f"HTTP {response.status_code}: {response.text[:200]}")
    message = str(error.get("message", ""))
    status = response.status_code
    if status == 422:
        return ValidationError(str(error.get("field", "body")), message)
    if status == 404:
        return NotFoundError(message)
    if status == 409:
        return ConflictError("request", message)
    if status in (401, 403):
        return AccessDenied(message)
    return StoreError(message)


class Client(_Base):
    """The service, with the Governor's method names (sync).

    ``http`` lends an existing ``httpx.Client`` (a test client over the app,
    a client with your proxies); ``base_url`` is then taken from it.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10,
        http: httpx.Client | None = None,
        **httpx_options: Any,
    ) -> None:
        super().__init__(api_key)
        if http is None:
            http = httpx.Client(base_url=base_url, timeout=timeout, **httpx_options)
        http.headers.update(self._headers)
        self._http = http

    def authorize(
        self,
        request_id: str,
        subject: Any,
        provider: str,
        model: str,
        estimate: Any = None,
        *,
        ttl: int | None = None,
        request: Any = None,
    ) -> Any:
        """See ``Governor.authorize``."""
        body = self._authorize(request_id, subject, provider, model, estimate, ttl, request)
        return self._granted(self._parse(self._http.post("/v1/authorize", json=body)))

    def commit(self, request_id: str, usage: Any, **fields: Any) -> Any:
        """See ``Governor.commit``."""
        body = self._commit(request_id, usage, fields)
        return self._parse(self._http.post("/v1/commit", json=body))

    def release(
        self, request_id: str, reason: str = "released", *, tenant: str | None = None
    ) -> Any:
        """See ``Governor.release``; returns the state name."""
        body = _clean({"request_id": request_id, "reason": reason, "tenant": tenant})
        return self._parse(self._http.post("/v1/release", json=body)).state

    def record(self, request_id: str, subject: Any, provider: str, model: str, usage: Any,
               **fields: Any) -> Any:  # fmt: skip
        """See ``Governor.record``."""
        event = {"request_id": request_id, "subject": subject, "provider": provider,
                 "model": model, "usage": usage, **fields}  # fmt: skip
        return self.record_many([event])[0]

    def record_many(self, events: Iterable[Mapping[str, Any]]) -> Any:
        """See ``Governor.record_many``."""
        body = {"events": [_jsonable(e) for e in events]}
        return self._parse(self._http.post("/v1/events", json=body)).events

    def hold(self, subject: Any, provider: str, model: str, estimate: Any = None,
             **options: Any) -> Hold:  # fmt: skip
        """See ``Governor.hold``: raises ``BudgetExceeded`` when refused."""
        request_id = options.pop("request_id", None) or uuid.uuid4().hex
        decision = self.authorize(request_id, subject, provider, model, estimate, **options)
        if not decision.allowed:
            raise BudgetExceeded(decision)
        return Hold(self, decision, subject.get("tenant") if isinstance(subject, Mapping) else None)

    def status(self, subject: Mapping[str, Any], provider: str | None = None,
               model: str | None = None, *, view: str = "operator") -> Any:  # fmt: skip
        """See ``Governor.status``."""
        params = _subject_params(subject) | {"provider": provider, "model": model, "view": view}
        return self._parse(self._http.get("/v1/status", params=_clean(params))).budgets

    def usage(self, tenant: str, by: Iterable[str] = (), since: Any = None,
              until: Any = None) -> Any:  # fmt: skip
        """See ``Governor.usage``."""
        params = {"tenant": tenant, "by": list(by), "from": since, "to": until}
        return self._parse(self._http.get("/v1/usage", params=_clean(params))).rows

    def create_budget(self, spec: Mapping[str, Any]) -> Any:
        """See ``Governor.create_budget``."""
        return self._parse(self._http.post("/v1/budgets", json=dict(spec)))

    def update_budget(self, budget_id: str, **changes: Any) -> Any:
        """See ``Governor.update_budget``."""
        return self._parse(self._http.patch(f"/v1/budgets/{budget_id}", json=changes))

    def get_budget(self, budget_id: str) -> Any:
        """See ``Governor.get_budget``."""
        return self._parse(self._http.get(f"/v1/budgets/{budget_id}"))

    def list_budgets(self, tenant: str | None = None) -> Any:
        """See ``Governor.list_budgets``."""
        return self._parse(self._http.get("/v1/budgets", params=_clean({"tenant": tenant}))).budgets

    def delete_budget(self, budget_id: str) -> None:
        """See ``Governor.delete_budget``."""
        self._parse(self._http.delete(f"/v1/budgets/{budget_id}"))

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base):
    """The service, with the Governor's method names (async)."""

    def __init__(
        self, base_url: str, api_key: str, *, timeout: float = 10, **httpx_options: Any
    ) -> None:
        super().__init__(api_key)
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=self._headers, timeout=timeout, **httpx_options
        )

    async def authorize(self, request_id: str, subject: Any, provider: str, model: str,
                        estimate: Any = None, *, ttl: int | None = None,
                        request: Any = None) -> Any:  # fmt: skip
        """See ``Governor.authorize``."""
        body = self._authorize(request_id, subject, provider, model, estimate, ttl, request)
        return self._granted(self._parse(await self._http.post("/v1/authorize", json=body)))

    async def commit(self, request_id: str, usage: Any, **fields: Any) -> Any:
        """See ``Governor.commit``."""
        body = self._commit(request_id, usage, fields)
        return self._parse(await self._http.post("/v1/commit", json=body))

    async def release(
        self, request_id: str, reason: str = "released", *, tenant: str | None = None
    ) -> Any:
        """See ``Governor.release``; returns the state name."""
        body = _clean({"request_id": request_id, "reason": reason, "tenant": tenant})
        return self._parse(await self._http.post("/v1/release", json=body)).state

    async def status(self, subject: Mapping[str, Any], provider: str | None = None,
                     model: str | None = None, *, view: str = "operator") -> Any:  # fmt: skip
        """See ``Governor.status``."""
        params = _subject_params(subject) | {"provider": provider, "model": model, "view": view}
        return self._parse(await self._http.get("/v1/status", params=_clean(params))).budgets

    async def record(self, request_id: str, subject: Any, provider: str, model: str,
                     usage: Any, **fields: Any) -> Any:  # fmt: skip
        """See ``Governor.record``."""
        event = {"request_id": request_id, "subject": subject, "provider": provider,
                 "model": model, "usage": usage, **fields}  # fmt: skip
        return (await self.record_many([event]))[0]

    async def record_many(self, events: Iterable[Mapping[str, Any]]) -> Any:
        """See ``Governor.record_many``."""
        body = {"events": [_jsonable(e) for e in events]}
        return self._parse(await self._http.post("/v1/events", json=body)).events

    async def usage(self, tenant: str, by: Iterable[str] = (), since: Any = None,
                    until: Any = None) -> Any:  # fmt: skip
        """See ``Governor.usage``."""
        params = {"tenant": tenant, "by": list(by), "from": since, "to": until}
        return self._parse(await self._http.get("/v1/usage", params=_clean(params))).rows

    async def create_budget(self, spec: Mapping[str, Any]) -> Any:
        """See ``Governor.create_budget``."""
        return self._parse(await self._http.post("/v1/budgets", json=dict(spec)))

    async def update_budget(self, budget_id: str, **changes: Any) -> Any:
        """See ``Governor.update_budget``."""
        return self._parse(await self._http.patch(f"/v1/budgets/{budget_id}", json=changes))

    async def get_budget(self, budget_id: str) -> Any:
        """See ``Governor.get_budget``."""
        return self._parse(await self._http.get(f"/v1/budgets/{budget_id}"))

    async def list_budgets(self, tenant: str | None = None) -> Any:
        """See ``Governor.list_budgets``."""
        params = _clean({"tenant": tenant})
        return self._parse(await self._http.get("/v1/budgets", params=params)).budgets

    async def delete_budget(self, budget_id: str) -> None:
        """See ``Governor.delete_budget``."""
        self._parse(await self._http.delete(f"/v1/budgets/{budget_id}"))

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _subject_params(subject: Mapping[str, Any]) -> dict[str, Any]:
    params = {k: v for k, v in subject.items() if k not in ("groups", "tags")}
    if subject.get("groups"):
        params["group"] = list(subject["groups"])
    return params


def _clean(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None and v != []}


def _jsonable(event: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(event)
    when = out.get("occurred_at")
    if when is not None and not isinstance(when, str):
        out["occurred_at"] = when.isoformat()
    return out
