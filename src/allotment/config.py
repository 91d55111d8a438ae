"""Settings and config files: the one place configuration is read.

A config file (YAML or TOML) holds ``budgets: [...]`` in spec form (human
units, see ``allotment.core.budgets``). The store URL comes from
``ALLOTMENT_DB`` or ``--db``, defaulting to ``sqlite:///allotment.db``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from allotment.errors import ConfigurationError

__all__ = ["DEFAULT_DB", "db_url", "load_budget_specs"]

DEFAULT_DB = "sqlite:///allotment.db"


def db_url(explicit: str | None = None) -> str:
    """The store URL: an explicit one, else ``$ALLOTMENT_DB``, else the default."""
    return explicit or os.environ.get("ALLOTMENT_DB") or DEFAULT_DB


def load_budget_specs(path: str | Path) -> list[Mapping[str, Any]]:
    """Read the budget specs of a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file."""
    file = Path(path)
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
    budgets = data.get("budgets") if isinstance(data, Mapping) else data
    if not isinstance(budgets, list) or not all(isinstance(b, Mapping) for b in budgets):
        raise ConfigurationError(f"{file}: expected 'budgets:' with a list of budget objects")
    return budgets
