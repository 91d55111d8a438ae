"""Worker for the race tests: many threads hammering one budget.

Lives in its own module so spawned processes can import it.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from allotment.governor import Governor
from allotment.store.base import Store

SUBJECT = {"tenant": "race", "user": "u"}


def hammer(
    target: str | Store, threads: int, attempts: int, estimate: int, actual: int
) -> tuple[int, int]:
    """Run ``threads`` threads of ``attempts`` authorize(+commit) each.

    Returns (allowed, violations): a violation is a grant whose decision shows
    used + reserved above the limit on any budget (invariant 1).
    """
    governor = Governor(target)
    barrier = threading.Barrier(threads)

    def run(_: int) -> tuple[int, int]:
        allowed = violations = 0
        barrier.wait()
        for _ in range(attempts):
            request_id = uuid.uuid4().hex
            decision = governor.authorize(
                request_id, SUBJECT, "openai", "gpt-4o", {"output_tokens": estimate}
            )
            if not decision.allowed:
                continue
            allowed += 1
            for view in decision.budgets:
                if view.limit is not None and view.used + view.reserved > view.limit:
                    violations += 1
            governor.commit(request_id, {"output_tokens": actual})
        return allowed, violations

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(run, range(threads)))
    if isinstance(target, str):
        governor.close()
    return sum(r[0] for r in results), sum(r[1] for r in results)
