"""``reprice``: a price correction recomputes past costs, keeps the old ones, moves counters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from allotment.cli import app
from allotment.governor import Governor
from allotment.pricing import CatalogPricer, ModelRate, PriceOverride
from tests.conftest import Clock

SUBJECT = {"tenant": "acme", "user": "u1"}
MILLION = {"input_tokens": 1_000_000}


def test_reprice_after_a_price_correction(
    make_governor: Callable[..., Governor], clock: Clock
) -> None:
    pricer = CatalogPricer()
    gov: Governor = make_governor(pricer=pricer)
    gov.create_budget({"id": "spend", "tenant": "acme", "meter": "cost", "window": "month"})
    start = clock.now
    gov.record("a", SUBJECT, "self", "llama-3-70b", MILLION)  # unknown: fallback price
    gov.record("b", SUBJECT, "openai", "gpt-4o-mini", MILLION)  # $0.15
    gov.record("c", SUBJECT, "openai", "gpt-4o-mini", MILLION | {"cost": "0.01"})  # caller's
    clock.advance(minutes=5)
    gov.record("d", SUBJECT, "self", "llama-3-70b", MILLION)  # outside the range below
    fallback = gov.events()[0].usage.cost_micros or 0
    assert fallback > 1_000_000

    # the self-hosted model gets its real price, effective from before the calls
    pricer.add_override(PriceOverride("llama-3-70b", ModelRate(Decimal("0.20"), Decimal("0.20")),
                                      start - timedelta(days=1), provider="self"))  # fmt: skip
    stats = gov.reprice(start, start + timedelta(minutes=1), model="llama*")
    assert (stats.events, stats.changed, stats.delta_micros) == (1, 1, 200_000 - fallback)

    a, b, c, d = gov.events()
    assert (a.usage.cost_micros, a.price["source"]) == (200_000, "override")
    assert a.price["previous"][0]["amount_micros"] == fallback
    assert a.price["previous"][0]["source"] == "fallback"
    assert (b.usage.cost_micros, c.usage.cost_micros, d.usage.cost_micros) == (
        150_000, 10_000, fallback,
    )  # fmt: skip
    assert gov.status(SUBJECT)[0].used == 200_000 + 150_000 + 10_000 + fallback
    assert gov.usage("acme")[0].totals["cost_micros"] == 200_000 + 150_000 + 10_000 + fallback

    live = (gov.store.counters(), gov.usage("acme", by=["model"]))
    gov.rebuild()
    assert (gov.store.counters(), gov.usage("acme", by=["model"])) == live

    again = gov.reprice(start, start + timedelta(minutes=10))
    assert (again.events, again.changed) == (3, 1)  # b unchanged, c is the caller's, d fixed now
    assert len(gov.events()[0].price["previous"]) == 1


def test_reprice_cli(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with Governor(url) as gov:
        gov.record("a", SUBJECT, "openai", "gpt-4o-mini", MILLION)
    result = CliRunner().invoke(app, ["ledger", "reprice", "--since", "2000-01-01",
                                      "--until", "2100-01-01", "--db", url])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "repriced 0 of 1 calls" in result.stdout
