"""Usage values: what pricing adds keeps everything else."""

from __future__ import annotations

from dataclasses import fields, replace

from allotment.core.usage import Usage


def test_with_cost_keeps_every_other_field() -> None:
    distinct = Usage(**{f.name: i + 1 for i, f in enumerate(fields(Usage))})
    assert distinct.with_cost(999) == replace(distinct, cost_micros=999)
