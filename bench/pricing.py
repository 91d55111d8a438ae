"""Pricing benchmark: µs per priced call, against genai-prices' calc_price in the same run.

Run with ``python -m bench.pricing`` (part of ``make bench``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price
from rich.console import Console
from rich.table import Table

from allotment.core.usage import Usage
from allotment.pricing import CatalogPricer, ModelRate, PriceOverride

AT = datetime(2026, 11, 23, 12, tzinfo=UTC)
USAGE = Usage(input_tokens=12_000, cached_input_tokens=4_000, output_tokens=800)
CASES = [
    ("catalog", "openai", "gpt-4o-mini"),
    ("catalog, dated id", "openai", "gpt-4o-mini-2024-07-18"),
    ("catalog, Bedrock id", "aws", "us.anthropic.claude-3-7-sonnet-20250219-v1:0"),
    ("catalog, context tiers", "google", "gemini-1.5-pro"),
    ("override", "self", "llama-3-70b"),
    ("fallback (unknown)", "openai", "my-finetune"),
]


def per_call(fn: Callable[[], object], calls: int = 3000, repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean µs per call of ``fn``."""
    fn()  # warm caches: what a long-running service sees
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def run(console: Console) -> Table:
    """Measure every case; returns the table."""
    override = PriceOverride(
        "llama-3-70b", ModelRate(input=Decimal("0.2"), output=Decimal("0.2")),
        datetime(2026, 1, 1, tzinfo=UTC), provider="self",
    )  # fmt: skip
    pricer = CatalogPricer([override])
    genai_usage = GenaiUsage(input_tokens=12_000, cache_read_tokens=4_000, output_tokens=800)
    table = Table(title="allotment pricing: µs per priced call (warm)")
    for column in ("case", "model", "allotment µs", "genai-prices calc_price µs", "ratio"):
        table.add_column(column, justify="left" if column in ("case", "model") else "right")
    for case, provider, model in CASES:
        ours = per_call(lambda p=provider, m=model: pricer.price(p, m, USAGE, AT))
        baseline: float | None = None
        if case.startswith("catalog") and "Bedrock" not in case:
            baseline = per_call(
                lambda p=provider, m=model: calc_price(
                    genai_usage, m, provider_id=p, genai_request_timestamp=AT
                )
            )
        table.add_row(
            case, f"{provider}/{model}", f"{ours:.1f}",
            "-" if baseline is None else f"{baseline:.1f}",
            "-" if baseline is None else f"{ours / baseline:.2f}",
        )  # fmt: skip
    return table


def main() -> None:
    """Print the table."""
    console = Console()
    console.print(run(console))


if __name__ == "__main__":
    main()
