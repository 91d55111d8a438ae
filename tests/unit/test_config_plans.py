"""``plans:`` in a config file: read, checked together before anything is written,
applied with the rates and budgets; and ``ALLOTMENT_PLAN_FROM_SUBJECT``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from allotment.config import load_plan_file, load_plan_specs
from allotment.errors import ConfigurationError, ConflictError, ValidationError
from allotment.governor import Governor
from allotment.settings import Settings, build_governor

CONFIG = """
rates:
  - {source: USD, target: EUR, rate: "0.9", effective_from: "2026-01-01T00:00:00Z"}
budgets:
  - {id: relay-day, tenant: relay, meter: cost, currency: EUR, window: day, limit: "50"}
plans:
  - id: core
    tenant: relay
    per: install
    default: true
    budgets: [{id: credits, meter: credits, window: lifetime, limit: 100}]
  - id: pro
    tenant: relay
    per: install
    budgets: [{id: credits, meter: credits, window: month, limit: 1000}]
"""
TOML = """
[[plans]]
id = "max"
per = "install"
budgets = [{id = "credits", meter = "credits", window = "month"}]
"""


def plan(plan_id: str, **more: Any) -> dict[str, Any]:
    budgets = [{"id": "credits", "meter": "credits", "window": "month", "limit": 10}]
    return {"id": plan_id, "tenant": "relay", "per": "install", "budgets": budgets} | more


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "allotment.yaml"
    path.write_text(CONFIG)
    return path


def test_plans_are_read_from_yaml_and_toml(config: Path, tmp_path: Path) -> None:
    assert [p["id"] for p in load_plan_specs(config)] == ["core", "pro"]
    toml = tmp_path / "plans.toml"
    toml.write_text(TOML)
    assert [p["id"] for p in load_plan_specs(toml)] == ["max"]
    bare = tmp_path / "budgets.yaml"
    bare.write_text("budgets: []\n")
    assert load_plan_specs(bare) == []
    bad = tmp_path / "bad.yaml"
    bad.write_text("plans: {id: core}\n")
    with pytest.raises(ValidationError) as info:
        load_plan_specs(bad)
    assert info.value.field == "plans"


def test_a_plan_file_holds_one_plan_or_a_list(config: Path, tmp_path: Path) -> None:
    one = tmp_path / "pro.yaml"
    one.write_text("id: pro\nper: install\nbudgets: []\n")
    assert [p["id"] for p in load_plan_file(one)] == ["pro"]
    assert [p["id"] for p in load_plan_file(config)] == ["core", "pro"]
    listed = tmp_path / "list.yaml"
    listed.write_text(
        "- {id: a, per: install, budgets: []}\n- {id: b, per: install, budgets: []}\n"
    )
    assert [p["id"] for p in load_plan_file(listed)] == ["a", "b"]
    with pytest.raises(ConfigurationError):
        load_plan_file(tmp_path / "missing.yaml")


def test_load_budgets_applies_rates_budgets_and_plans(config: Path) -> None:
    gov = Governor("memory://", pricer=None)
    saved = gov.load_budgets(config)
    assert [b.id for b in saved] == ["relay-day"]
    assert [(p.id, p.default, p.version) for p in gov.list_plans("relay")] == [
        ("core", True, 1), ("pro", False, 1)]  # fmt: skip
    gov.load_budgets(config)  # again: the same plans, one version more
    assert [p.version for p in gov.list_plans("relay")] == [2, 2]
    view = gov.status({"tenant": "relay", "install": "i-1"})
    assert sorted(v.budget_id for v in view) == ["core.credits", "relay-day"]


def test_the_default_may_move_from_one_plan_to_another() -> None:
    gov = Governor("memory://", pricer=None)
    gov.apply_config([], plans=[plan("core", default=True), plan("pro")])
    gov.apply_config([], plans=[plan("pro", default=True), plan("core")])  # pro written last
    assert {p.id: p.default for p in gov.list_plans("relay")} == {"core": False, "pro": True}


@pytest.mark.parametrize(
    ("plans", "field"),
    [
        ([plan("a"), plan("a")], "plans[1].id"),
        ([plan("a"), plan("b", per="user")], "plans[1].per"),
        ([plan("a", default=True), plan("b", default=True)], "plans[1].default"),
        ([plan("a", colour="red")], "plans[0].colour"),
        ([plan("a", budgets=[{"id": "x", "meter": "credits"}])], "plans[0].budgets[0].window"),
        (["core"], "plans[0]"),
    ],
)
def test_bad_plans_write_nothing_and_name_the_entry(plans: list[Any], field: str) -> None:
    gov = Governor("memory://", pricer=None)
    budget = {"id": "day", "tenant": "relay", "meter": "tokens", "window": "day", "limit": 5}
    with pytest.raises(ValidationError) as info:
        gov.apply_config([budget], plans=plans)
    assert info.value.field == field
    assert gov.list_budgets() == [] and gov.list_plans() == []


def test_a_plan_budget_may_not_take_a_budgets_id() -> None:
    gov = Governor("memory://", pricer=None)
    taken = {"id": "pro.credits", "tenant": "relay", "meter": "credits", "window": "day"}
    with pytest.raises(ConflictError):
        gov.apply_config([taken], plans=[plan("pro")])
    assert gov.list_budgets() == []
    gov.create_budget(taken)
    with pytest.raises(ConflictError):
        gov.apply_config([], plans=[plan("pro")])
    gov.delete_budget("pro.credits", tenant="relay")
    elsewhere = taken | {"tenant": "other"}  # another tenant's budget takes no id of relay's
    gov.apply_config([elsewhere], plans=[plan("pro")])
    assert [p.id for p in gov.list_plans("relay")] == ["pro"]


def test_plans_are_checked_against_the_stored_ones_and_write_nothing_when_refused() -> None:
    gov = Governor("memory://", pricer=None)
    gov.set_plan(plan("core", default=True))
    extra = {"id": "extra", "tenant": "relay", "meter": "credits", "window": "day"}
    with pytest.raises(ValidationError) as info:
        gov.apply_config([extra], plans=[plan("pro", default=True)])
    assert info.value.field == "plans[0].default"
    assert gov.list_budgets() == []  # all or nothing: the budget is not written either
    with pytest.raises(ValidationError) as per:
        gov.apply_config([], plans=[plan("pro", per="user")])
    assert per.value.field == "plans[0].per"
    gov.apply_config([], plans=[plan("core", per="user")])  # its only plan: fine
    assert gov.get_plan("core", tenant="relay").per == "user"
    moved = [plan("core", per="user"), plan("pro", per="user", default=True)]
    gov.apply_config([], plans=[{**moved[0], "default": False}, moved[1]])  # the default moves
    assert [p.id for p in gov.list_plans("relay") if p.default] == ["pro"]


@pytest.mark.parametrize(("value", "trusted"), [("1", True), ("true", True), ("0", False),
                                                 ("", False)])  # fmt: skip
def test_plan_from_subject_is_a_setting(value: str, trusted: bool) -> None:
    settings = Settings.from_env({"ALLOTMENT_PLAN_FROM_SUBJECT": value}, db="memory://")
    assert settings.plan_from_subject is trusted
    with build_governor(settings, pricer=None) as gov:
        assert gov.plan_from_subject is trusted


def test_a_bad_plan_from_subject_names_its_variable() -> None:
    with pytest.raises(ConfigurationError, match="ALLOTMENT_PLAN_FROM_SUBJECT"):
        Settings.from_env({"ALLOTMENT_PLAN_FROM_SUBJECT": "maybe"}, db="memory://")


def test_the_readmes_tiers_load(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", readme[readme.index("### Plans (tiers)") :], re.S)
    assert block is not None
    path = tmp_path / "tiers.yaml"
    path.write_text(block.group(1))
    gov = Governor("memory://", pricer=None)
    assert gov.load_budgets(path) == []
    assert [(p.id, p.default) for p in gov.list_plans("relay")] == [
        ("core", True), ("max", False), ("pro", False)]  # fmt: skip
