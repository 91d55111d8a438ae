"""The Governor's other faces: ``AsyncGovernor``, ``Client`` and ``AsyncClient``.

Each spells out the Governor's signatures (no ``*args``/``**kwargs`` forwarding),
so editors and type checkers see them, and offers the methods its transport can.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from allotment import AsyncGovernor, BudgetExceeded, EventStatus, Governor
from allotment.client import AsyncClient, Client
from allotment.store.base import EventQuery

SUBJECT = {"tenant": "acme", "user": "u1"}
SPEC = {"id": "d", "tenant": "acme", "meter": "tokens", "window": "day", "limit": 100}
#: the Governor's own plumbing, for the service and the sync face
SYNC_ONLY = {"now", "authorize_async", "commit_async", "create_first_key", "authenticate"}
#: what has no HTTP endpoint (the store's maintenance) or needs no client
NOT_OVER_HTTP = SYNC_ONLY | {"sweep", "reprice", "rebuild", "archive", "run_topups", "get_pool"}
BUDGET_METHODS = {"create_budget", "set_budget", "update_budget", "get_budget", "list_budgets",
                  "delete_budget", "load_budgets"}  # fmt: skip
PLAN_METHODS = {"set_plan", "get_plan", "list_plans", "delete_plan", "assign_plan", "plan_of"}


def public(cls: type) -> dict[str, Callable[..., Any]]:
    """The public methods of ``cls``, its own and those of allotment's mixins it has."""
    return {
        name: getattr(cls, name)
        for name in dir(cls)
        if not name.startswith("_")
        and callable(getattr(cls, name))
        and any(
            name in vars(base) for base in cls.__mro__ if base.__module__.startswith("allotment")
        )
    }


def test_async_governor_has_every_method_of_the_governor() -> None:
    assert set(public(Governor)) - SYNC_ONLY - {"close"} <= set(public(AsyncGovernor))
    assert PLAN_METHODS <= set(public(AsyncGovernor))  # the Plans mixin's, too


@pytest.mark.parametrize("face", [Client, AsyncClient])
def test_the_clients_have_the_governors_methods_over_http(face: type) -> None:
    wanted = set(public(Governor)) - NOT_OVER_HTTP - {"close"}
    assert wanted <= set(public(face))
    assert BUDGET_METHODS | PLAN_METHODS <= set(public(face))


@pytest.mark.parametrize("face", [AsyncGovernor, Client, AsyncClient])
def test_every_signature_is_written_out(face: type) -> None:
    for name, method in public(face).items():
        kinds = {p.kind for p in inspect.signature(method).parameters.values()}
        assert inspect.Parameter.VAR_POSITIONAL not in kinds, name
        if name != "update_budget":  # the Governor's own: spec fields by name
            assert inspect.Parameter.VAR_KEYWORD not in kinds, name


@pytest.mark.parametrize("face", [AsyncGovernor, Client, AsyncClient])
def test_the_arguments_are_the_governors(face: type) -> None:
    for name, method in public(face).items():
        if name not in public(Governor) or name in ("close", "revoke_key", "create_key"):
            continue
        ours = inspect.signature(method).parameters
        theirs = inspect.signature(getattr(Governor, name)).parameters
        shared = [(p.name, p.kind, p.default) for p in ours.values() if p.name in theirs]
        assert shared == [(p.name, p.kind, p.default) for p in theirs.values()], name
        assert set(ours) - set(theirs) <= {"view"}, name  # the clients' status(view=...)


def test_async_governor_hold_takes_a_provider_request() -> None:
    async def main() -> None:
        async with AsyncGovernor("memory://") as gov:
            await gov.create_budget(SPEC)
            request = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 40}
            async with gov.hold(SUBJECT, "openai", "gpt-4o-mini", request=request) as h:
                assert h.decision.allowed and (await gov.status(SUBJECT))[0].reserved > 40
                await h.commit({"output_tokens": 3})
            with pytest.raises(RuntimeError):
                async with gov.hold(SUBJECT, "openai", "m", {"output_tokens": 5}, ttl=60):
                    raise RuntimeError("provider failed")
            with pytest.raises(BudgetExceeded):
                async with gov.hold(SUBJECT, "openai", "m", {"output_tokens": 98}):
                    pass
            assert (await gov.status(SUBJECT))[0].used == 3
            released = await gov.events(EventQuery(status=EventStatus.RELEASED))
            assert [e.reason for e in released] == ["exception"]

    asyncio.run(main())


def test_async_governor_covers_keys_rates_and_the_ledger(tmp_path: Any) -> None:
    async def main() -> None:
        async with AsyncGovernor(f"sqlite:///{tmp_path / 'a.db'}") as gov:
            key, secret = await gov.create_key("service", "acme")
            assert [k.id for k in await gov.list_keys("acme")] == [key.id]
            assert (await gov.revoke_key(key.id)).revoked_at is not None
            await gov.set_rate("USD", "EUR", "0.9")
            assert len(await gov.rates()) == 1
            await gov.record("r1", SUBJECT, "openai", "gpt-4o-mini", {"input_tokens": 10})
            assert (await gov.rebuild()).events == 1
            assert secret.startswith("ak_")

    asyncio.run(main())
