"""Usage values: what pricing adds keeps everything else; made only from checked figures."""

from __future__ import annotations

import pytest

from allotment.core.usage import HELD_AMOUNTS, USAGE_FIELDS, Meter, Usage, parse_usage
from allotment.errors import ValidationError


def test_with_cost_keeps_every_other_field() -> None:
    distinct = Usage(**{name: i + 1 for i, name in enumerate(USAGE_FIELDS)})
    priced = distinct.with_cost(999)
    assert priced == distinct._replace(cost_micros=999)
    assert type(priced) is Usage and priced.cost_micros == 999


def test_fields_defaults_and_plain_forms() -> None:
    usage = Usage(input_tokens=3, output_tokens=4)
    assert (usage.tokens, usage.requests, usage.cost_micros) == (7, 1, None)
    assert usage.as_tuple() == (3, 4, 0, 0, 0, 0, 0, 0, 0, 1, 0, None)
    assert type(usage.as_tuple()) is tuple  # fingerprints hash its repr: no class name
    assert usage.to_dict()["output_tokens"] == 4 and list(usage.to_dict()) == list(USAGE_FIELDS)
    assert repr(usage).startswith("Usage(input_tokens=3, output_tokens=4,")
    assert parse_usage(usage.to_dict()) == usage
    with pytest.raises(AttributeError):
        usage.input_tokens = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("figures", "field"),
    [
        ({"input_tokens": -1}, "usage.input_tokens"),
        ({"output_tokens": True}, "usage.output_tokens"),
        ({"images": 1.0}, "usage.images"),
        ({"credits": 10**19}, "usage.credits"),
        ({"cost_micros": -5}, "usage.cost_micros"),
    ],
)
def test_bad_figures_name_their_field(figures: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as direct:
        Usage(**figures)  # type: ignore[arg-type]
    assert direct.value.field == field
    with pytest.raises(ValidationError) as parsed:
        parse_usage(figures, "estimate")
    assert parsed.value.field == field.replace("usage", "estimate")


def test_a_bad_cost_is_refused_when_pricing() -> None:
    with pytest.raises(ValidationError):
        Usage().with_cost(-1)


def test_every_meter_counts_its_own_figure() -> None:
    usage = Usage(input_tokens=3, output_tokens=5, audio_ms=7, requests=11, credits=13,
                  cost_micros=17, cached_input_tokens=2, images=19)  # fmt: skip
    expected = {"tokens": 8, "input_tokens": 3, "output_tokens": 5, "requests": 11,
                "audio_seconds": 7, "credits": 13, "cost": 17, "concurrency": 0}  # fmt: skip
    assert {m.value: m.amount(usage) for m in Meter} == expected
    assert Meter.COST.amount(Usage()) == 0  # unpriced
    # A reservation holds what it would use, and one slot of a concurrency budget.
    assert {m.value: HELD_AMOUNTS[m](usage) for m in Meter} == expected | {"concurrency": 1}
