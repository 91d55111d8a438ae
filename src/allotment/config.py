"""Settings and config files: the one place configuration is read.

A config file (YAML or TOML) holds ``budgets: [...]`` in spec form (human
units, see ``allotment.core.budgets``) and optionally ``pricing:``::

    pricing:
      unknown_model: fallback        # or deny
      fallback: {input: "15", output: "60"}      # USD per million tokens
      overrides:
        - {model: "gpt-4o*", provider: openai, input: "2.00", output: "8.00",
           effective_from: "2026-11-01T00:00:00Z"}
        - {model: llama-3-70b, provider: self, tenant: acme, input: "0.2", output: "0.2"}

and ``rates:``, exchange rates for budgets kept in other currencies::

    rates:
      - {source: USD, target: EUR, rate: "0.92", effective_from: "2026-01-01T00:00:00Z"}

and ``plans:``, tiers whose budgets each member of ``per`` gets (see
``allotment.core.plans``)::

    plans:
      - {id: core, tenant: relay, per: install, default: true, budgets: [
          {id: credits, meter: credits, window: lifetime, limit: 100}]}
      - {id: pro, tenant: relay, per: install, budgets: [
          {id: credits, meter: credits, window: month, limit: 1000}]}

Every section is optional: a file with only ``pricing:`` (or only
``rates:``) holds no budgets, and that is fine.

The store URL comes from ``ALLOTMENT_DB`` or ``--db``, defaulting to
``sqlite:///allotment.db``: the service, ``serve --demo`` and every CLI command
share that one default. The CLI talks to a running service instead when given
``--url`` or ``ALLOTMENT_URL`` (with ``--api-key`` or ``ALLOTMENT_API_KEY``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from allotment.core.decisions import Uncovered
from allotment.core.fx import FxRate
from allotment.core.plans import Plan
from allotment.errors import ConfigurationError, ValidationError
from allotment.pricing.catalog import CatalogPricer, PriceOverride
from allotment.pricing.static import ModelRate

__all__ = [
    "DEFAULT_DB",
    "PricingConfig",
    "db_url",
    "load_budget_specs",
    "load_plan_file",
    "load_plan_specs",
    "load_pricing",
    "load_rates",
    "load_uncovered",
    "parse_plans",
    "parse_pricing",
    "redact_url",
    "service_key",
    "service_url",
]

DEFAULT_DB = "sqlite:///allotment.db"


def db_url(explicit: str | None = None) -> str:
    """The store URL: an explicit one, else ``$ALLOTMENT_DB``, else the default."""
    return explicit or os.environ.get("ALLOTMENT_DB") or DEFAULT_DB


def service_url() -> str | None:
    """``$ALLOTMENT_URL``: the service the CLI talks to instead of a store (None: unset)."""
    return os.environ.get("ALLOTMENT_URL") or None


def service_key() -> str | None:
    """``$ALLOTMENT_API_KEY``: the key the CLI sends to the service (None: unset)."""
    return os.environ.get("ALLOTMENT_API_KEY") or None


def redact_url(url: str) -> str:
    """A store URL fit for messages: its password, if any, as ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def load_budget_specs(path: str | Path) -> list[Mapping[str, Any]]:
    """Read the budget specs of a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file.

    A file without ``budgets:`` (only ``pricing:`` or ``rates:``, or empty)
    has none; a top-level list is taken as the budgets themselves.
    """
    data = _read(Path(path))
    budgets = data.get("budgets") if isinstance(data, Mapping) else data
    if budgets is None:
        return []
    if not isinstance(budgets, list) or not all(isinstance(b, Mapping) for b in budgets):
        raise ConfigurationError(f"{path}: expected 'budgets:' with a list of budget objects")
    return budgets


def load_rates(path: str | Path) -> list[FxRate]:
    """Read ``rates: [{source, target, rate, effective_from}, ...]`` (empty if absent)."""
    data = _read(Path(path))
    rates = (data.get("rates") or []) if isinstance(data, Mapping) else []
    if not isinstance(rates, list):
        raise ValidationError("rates", "must be a list of exchange rates")
    return [FxRate.from_spec(r, f"rates[{i}]") for i, r in enumerate(rates)]


def load_plan_specs(path: str | Path) -> list[Mapping[str, Any]]:
    """Read ``plans: [{id, tenant?, per, default?, budgets: [...]}, ...]`` (empty if
    absent); ``parse_plans`` checks them."""
    data = _read(Path(path))
    return _plan_list((data.get("plans") or []) if isinstance(data, Mapping) else [])


def load_plan_file(path: str | Path) -> list[Mapping[str, Any]]:
    """Read a plan file: one plan (an ``id:`` at the top), else its ``plans:``."""
    data = _read(Path(path))
    if isinstance(data, Mapping) and "plans" not in data:
        return [data]
    return _plan_list(data.get("plans") if isinstance(data, Mapping) else data)


def _plan_list(plans: object) -> list[Mapping[str, Any]]:
    if not isinstance(plans, list) or not all(isinstance(p, Mapping) for p in plans):
        raise ValidationError("plans", "must be a list of plan objects")
    return plans


def parse_plans(specs: Sequence[Plan | Mapping[str, Any]]) -> list[Plan]:
    """A config's ``plans:`` entries as plans, each given once; an error names the entry
    (``plans[1].id``). How they fit the stored plans and budgets is the store step's
    to check, as it writes them (``allotment.lifecycle.plans.put_config``)."""
    plans = [_plan(spec, i) for i, spec in enumerate(specs)]
    seen: set[str] = set()
    for i, plan in enumerate(plans):
        if plan.key in seen:
            where = "" if plan.tenant is None else f" in tenant {plan.tenant!r}"
            raise ValidationError(f"plans[{i}].id", f"{plan.id!r} is given twice{where}")
        seen.add(plan.key)
    return plans


def _plan(spec: Plan | Mapping[str, Any], i: int) -> Plan:
    if isinstance(spec, Plan):
        return spec
    if not isinstance(spec, Mapping):
        raise ValidationError(f"plans[{i}]", "must be a plan object")
    try:
        return Plan.from_spec(spec)
    except ValidationError as exc:
        raise exc.within(f"plans[{i}]") from None


def load_uncovered(path: str | Path) -> Uncovered | None:
    """Read ``uncovered: allow | warn | deny`` (what authorize does with calls no
    budget covers) from a config file; None if absent."""
    data = _read(Path(path))
    value = data.get("uncovered") if isinstance(data, Mapping) else None
    if value is None:
        return None
    try:
        return Uncovered(value)
    except ValueError:
        raise ValidationError("uncovered", "must be 'allow', 'warn' or 'deny'") from None


@dataclass(frozen=True, slots=True)
class PricingConfig:
    """The ``pricing:`` section: a catalog pricer and the unknown-model policy."""

    pricer: CatalogPricer
    unknown_model: str = "fallback"


def load_pricing(path: str | Path) -> PricingConfig:
    """Read ``pricing:`` from a config file (a pricer without overrides if absent)."""
    data = _read(Path(path))
    section = data.get("pricing") if isinstance(data, Mapping) else None
    if section is None:
        return PricingConfig(CatalogPricer())
    return parse_pricing(section)


def parse_pricing(section: object) -> PricingConfig:
    """Build the pricing settings from a ``pricing:`` mapping, naming bad fields."""
    if not isinstance(section, Mapping):
        raise ValidationError("pricing", "must be an object")
    unknown = section.get("unknown_model", "fallback")
    if unknown not in ("deny", "fallback"):
        raise ValidationError("pricing.unknown_model", "must be 'deny' or 'fallback'")
    fallback = section.get("fallback")
    rate = None if fallback is None else ModelRate.from_spec(fallback, "pricing.fallback")
    overrides = section.get("overrides") or []
    if not isinstance(overrides, list):
        raise ValidationError("pricing.overrides", "must be a list")
    parsed = [
        PriceOverride.from_spec(o, f"pricing.overrides[{i}]") for i, o in enumerate(overrides)
    ]
    return PricingConfig(CatalogPricer(parsed, rate), unknown)


def _read(file: Path) -> Any:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read {file}: {exc}") from exc
    try:
        if file.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif file.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise ConfigurationError(f"{file}: use a .yaml, .yml or .toml file")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"{file}: {exc}") from exc
    return data
