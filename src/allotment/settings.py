"""The one composition root: every face builds its Governor here.

The service (``build_app``), every CLI command that opens a store and
``serve`` read the same settings, so a deployment's price overrides and its
policy for uncovered calls hold whichever face a call comes through.

Settings come from the environment, and the config file it names:

- ``ALLOTMENT_DB``: the store URL (default ``sqlite:///allotment.db``);
- ``ALLOTMENT_CONFIG``: a YAML/TOML file with ``budgets:``, ``rates:``,
  ``pricing:`` and ``uncovered:``;
- ``ALLOTMENT_UNCOVERED``: what authorize does with calls no budget covers,
  ``allow``, ``warn`` or ``deny`` (default: the file's, else ``warn``);
- ``ALLOTMENT_READ_THREADS``: the threads a service worker reads on (8);
- ``ALLOTMENT_SWEEP_SECONDS``: how often a worker releases expired
  reservations (1; 0 never);
- ``ALLOTMENT_TOPUP_GATEWAY``: where credit pools' auto top-ups are paid: an
  ``https://`` URL (``http://`` only to this host), signed with
  ``ALLOTMENT_TOPUP_SECRET`` (a ``whsec_`` secret); or ``test``,
  ``test:declined``, ``test:failed`` for the test gateway (demos). Unset:
  top-ups wait, pending;
- ``ALLOTMENT_PLAN_FROM_SUBJECT``: ``1`` takes a member's plan from the
  subject's ``plan`` tag (a deployment that trusts its callers); unset or
  ``0``: plans are assigned server-side and such a tag is ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from allotment.config import db_url, load_pricing, load_uncovered
from allotment.core.decisions import Uncovered
from allotment.errors import ConfigurationError
from allotment.governor import Governor
from allotment.payments import OUTCOMES, HttpsGateway, PaymentGateway, TestGateway
from allotment.pricing import CatalogPricer

__all__ = ["READ_THREADS", "Settings", "build_gateway", "build_governor", "build_pricer"]

#: threads a service worker runs its reading routes on, unless set
READ_THREADS = 8


@dataclass(frozen=True, slots=True)
class Settings:
    """What a face needs to build its Governor (and the service its app)."""

    db: str
    config: str | None = None
    uncovered: Uncovered | None = None
    read_threads: int = READ_THREADS
    sweep_seconds: float = 1.0
    topup_gateway: str | None = None
    topup_secret: str | None = None
    plan_from_subject: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, db: str | None = None) -> Settings:
        """The settings of ``env`` (default: the process environment); ``db`` wins over it.

        A bad value raises ``ConfigurationError`` naming the variable, before
        any store is opened.
        """
        env = os.environ if env is None else env
        uncovered = env.get("ALLOTMENT_UNCOVERED", "").strip()
        return cls(
            db=db or env.get("ALLOTMENT_DB") or db_url(),
            config=env.get("ALLOTMENT_CONFIG") or None,
            uncovered=_choice(uncovered, "ALLOTMENT_UNCOVERED") if uncovered else None,
            read_threads=_positive(env.get("ALLOTMENT_READ_THREADS"), "ALLOTMENT_READ_THREADS"),
            sweep_seconds=_seconds(env.get("ALLOTMENT_SWEEP_SECONDS"), "ALLOTMENT_SWEEP_SECONDS"),
            topup_gateway=env.get("ALLOTMENT_TOPUP_GATEWAY") or None,
            topup_secret=env.get("ALLOTMENT_TOPUP_SECRET") or None,
            plan_from_subject=_flag(
                env.get("ALLOTMENT_PLAN_FROM_SUBJECT"), "ALLOTMENT_PLAN_FROM_SUBJECT"
            ),
        ).checked()

    def checked(self) -> Settings:
        """These settings, once the gateway they name can be built (ConfigurationError)."""
        build_gateway(self)
        return self


def build_pricer(settings: Settings) -> CatalogPricer:
    """The deployment's pricer: the catalog with the config file's overrides and fallback."""
    return load_pricing(settings.config).pricer if settings.config else CatalogPricer()


def build_governor(settings: Settings, *, load_budgets: bool = False, **options: Any) -> Governor:
    """The Governor ``settings`` describe: its store, the config file's pricing and policy.

    ``load_budgets`` also applies the config file's rates and budgets (the
    service does, on start). ``options`` are Governor arguments that win over
    the settings (a command that needs no pricer passes ``pricer=None``).
    """
    kwargs: dict[str, Any] = {}
    uncovered = settings.uncovered
    if settings.config:
        pricing = load_pricing(settings.config)
        kwargs |= {"pricer": pricing.pricer, "unknown_model": pricing.unknown_model}
        uncovered = uncovered or load_uncovered(settings.config)
    if uncovered is not None:
        kwargs["uncovered"] = uncovered.value
    kwargs["gateway"] = build_gateway(settings)
    kwargs["plan_from_subject"] = settings.plan_from_subject
    governor = Governor(settings.db, **(kwargs | options))
    if load_budgets and settings.config:
        try:
            governor.load_budgets(settings.config)
        except BaseException:
            governor.close()
            raise
    return governor


def build_gateway(settings: Settings) -> PaymentGateway | None:
    """The payment gateway of auto top-ups, if the settings name one."""
    given = (settings.topup_gateway or "").strip()
    if not given:
        return None
    if given == "test" or given.startswith("test:"):
        outcome = given.partition(":")[2] or "succeeded"
        if outcome not in OUTCOMES:
            raise ConfigurationError(
                f"ALLOTMENT_TOPUP_GATEWAY test outcome must be one of {', '.join(OUTCOMES)}"
            )
        return TestGateway(outcome=outcome)
    url = httpx.URL(given)
    local = url.host in ("127.0.0.1", "localhost", "::1")
    if url.scheme != "https" and not (url.scheme == "http" and local):
        raise ConfigurationError("ALLOTMENT_TOPUP_GATEWAY must be an https:// URL (or test)")
    secret = settings.topup_secret or ""
    try:
        if not secret.startswith("whsec_"):
            raise ValueError(secret)
        Webhook(secret)  # a whsec_ secret is base64 after its prefix
    except Exception:
        raise ConfigurationError("ALLOTMENT_TOPUP_SECRET must be a whsec_ secret") from None
    return HttpsGateway(given, secret)


def _choice(value: str, name: str) -> Uncovered:
    try:
        return Uncovered(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be allow, warn or deny, got {value!r}") from None


def _flag(value: str | None, name: str) -> bool:
    given = (value or "").strip().lower()
    if given in ("", "0", "false", "no", "off"):
        return False
    if given in ("1", "true", "yes", "on"):
        return True
    raise ConfigurationError(f"{name} must be 1 or 0, got {value!r}")


def _positive(value: str | None, name: str) -> int:
    given = (value or "").strip()
    if not given:
        return READ_THREADS
    if not given.isdigit() or int(given) < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {given!r}")
    return int(given)


def _seconds(value: str | None, name: str) -> float:
    given = (value or "").strip()
    if not given:
        return 1.0
    try:
        seconds = float(given)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise ConfigurationError(
            f"{name} must be a number of seconds from 0 to 3600, got {given!r}"
        )
    return seconds
