"""A budgets file is validated whole and written in one transaction: all or nothing."""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from allotment.errors import ConflictError, ValidationError
from allotment.governor import Governor

ROOT = Path(__file__).resolve().parents[2]

HALF_BAD = """
budgets:
  - {id: port-a-day, tenant: port-a, meter: tokens, window: day, limit: 200000}
  - {id: org-daily, tenant: globex, meter: cost, currency: EUR, window: day, limit: "2.00"}
"""


def test_the_readme_budgets_load_exactly_as_printed(
    make_governor: Callable[..., Governor], tmp_path: Path
) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Budgets") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    path = tmp_path / "budgets.yaml"
    path.write_text(block.group(1))
    gov = make_governor()
    loaded = gov.load_budgets(path)
    assert {b.id for b in loaded} == {b.id for b in gov.list_budgets()} == {
        "port-a-day", "org-daily", "alice-daily",
    }  # fmt: skip


def test_a_file_that_fails_writes_nothing(
    make_governor: Callable[..., Governor], tmp_path: Path
) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text(HALF_BAD)
    gov = make_governor()
    with pytest.raises(ValidationError) as info:
        gov.load_budgets(path)
    assert info.value.field == "budgets[1].currency"
    assert "rates:" in info.value.message  # says how to add one
    assert gov.list_budgets() == []


def test_a_file_may_carry_its_own_rates(
    make_governor: Callable[..., Governor], tmp_path: Path
) -> None:
    path = tmp_path / "budgets.yaml"
    rate = '{source: USD, target: EUR, rate: "0.92", effective_from: "2026-01-01T00:00:00Z"}'
    rates = f"\nrates:\n  - {rate}\n"
    path.write_text(HALF_BAD + rates)
    gov = make_governor()
    assert [b.id for b in gov.load_budgets(path)] == ["port-a-day", "org-daily"]
    assert [(r.source, r.target) for r in gov.rates()] == [("USD", "EUR")]


def test_a_duplicate_id_in_a_file_is_refused(
    make_governor: Callable[..., Governor], tmp_path: Path
) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text(
        "budgets:\n"
        "  - {id: a, tenant: t, meter: tokens, window: day}\n"
        "  - {id: a, tenant: t, meter: tokens, window: week}\n"
    )
    gov = make_governor()
    with pytest.raises(ValidationError) as info:
        gov.load_budgets(path)
    assert info.value.field == "budgets[1].id"
    assert gov.list_budgets() == []


def test_create_budget_is_one_transaction(make_governor: Callable[..., Governor]) -> None:
    """Of many concurrent creates of one id exactly one wins; the rest get ConflictError."""
    gov = make_governor()
    spec = {"id": "race", "tenant": "t", "meter": "tokens", "window": "day", "limit": 1}

    def create(i: int) -> str:
        try:
            gov.create_budget(spec | {"limit": i + 1})
        except ConflictError:
            return "conflict"
        return "created"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(create, range(16)))
    assert outcomes.count("created") == 1
