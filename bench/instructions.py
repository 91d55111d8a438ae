"""Instructions per authorize+commit pair on the memory store, counted by valgrind.

Timings on a shared machine drift by a factor of two or more within an hour;
the number of instructions a pair executes does not. This counts them with
valgrind's cachegrind (no cache simulation) for the working tree and,
with ``--against REV``, for a git revision in the same run, and prints the
ratio: the speed-up to expect where the pair is CPU-bound, as it is on the
memory store.

Each count is two runs of the same process, one that makes the request ids
and stops (``--dry``) and one that also runs the pairs; the difference over
the number of pairs is what one pair costs, start-up and imports excluded.
The loop is ``bench.engine``'s: same budgets, subject and fixed clock.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent


def loop(pairs: int, dry: bool) -> None:
    """Warm up, make ``pairs`` request ids, and (unless ``dry``) run the pairs."""
    from allotment import Governor
    from bench.engine import BUDGETS, NOW, SUBJECT

    gov = Governor("memory://", clock=lambda: NOW)
    for spec in BUDGETS:
        gov.create_budget(spec)
    for rid in [uuid.uuid4().hex for _ in range(200)]:
        gov.authorize(rid, SUBJECT, "openai", "gpt-4o-mini", {"output_tokens": 200})
        gov.commit(rid, {"input_tokens": 120, "output_tokens": 80})
    ids = [uuid.uuid4().hex for _ in range(pairs)]
    for rid in [] if dry else ids:
        gov.authorize(rid, SUBJECT, "openai", "gpt-4o-mini", {"output_tokens": 200})
        gov.commit(rid, {"input_tokens": 120, "output_tokens": 80})


def instructions(src: Path, pairs: int, dry: bool) -> int:
    """Instructions valgrind counts for one ``loop`` process importing ``src``."""
    env = os.environ | {"PYTHONPATH": f"{src}{os.pathsep}{ROOT}"}
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no",
               "--cachegrind-out-file=/dev/null", sys.executable, "-m", "bench.instructions",
               "--loop", str(pairs), *(["--dry"] if dry else [])]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{done.stderr}")
    return int(found.group(1).replace(",", ""))


def per_pair(src: Path, pairs: int) -> int:
    """Instructions one pair costs with the package under ``src``."""
    return (instructions(src, pairs, False) - instructions(src, pairs, True)) // pairs


def main() -> None:
    """Parse arguments, count, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--against", metavar="REV", help="a git revision to compare with")
    parser.add_argument("--loop", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dry", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop is not None:
        loop(args.loop, args.dry)
        return
    if shutil.which("valgrind") is None:
        sys.exit("bench.instructions needs valgrind (apt install valgrind)")
    table = Table(title=f"instructions per authorize+commit pair, memory store ({args.pairs:,})")
    for column in ("code", "instructions/pair", "ratio to this tree"):
        table.add_column(column, justify="left" if column == "code" else "right")
    here = per_pair(ROOT / "src", args.pairs)
    table.add_row("working tree", f"{here:,}", "1.000")
    if args.against:
        with tempfile.TemporaryDirectory(prefix="allotment-rev-") as tmp:
            tree = Path(tmp) / "tree"
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), args.against],
                           cwd=ROOT, check=True)  # fmt: skip
            try:
                there = per_pair(tree / "src", args.pairs)
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                               check=True)  # fmt: skip
        table.add_row(args.against, f"{there:,}", f"{there / here:.3f}")
    Console().print(table)


if __name__ == "__main__":
    main()
