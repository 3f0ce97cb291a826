"""The block schedules of falip.core.plan: which blocks run once per image, which per region.

That every schedule computes the reference's features: tests/core/test_towers.py.
"""

from __future__ import annotations

import pytest

import falip
from falip.core.plan import ForwardPlan


def _kinds(plan: ForwardPlan) -> list[tuple[int, str, bool]]:
    return [(s.block, s.kind, s.biased) for s in plan.steps]


def test_cls_form_schedules():
    plan = ForwardPlan.build((8, 9, 10, 11), "cls", 12)
    assert _kinds(plan) == [(8, "fork_cls", True), (9, "shared", True), (10, "region", True), (11, "cls", True)]
    assert plan.prefix == 8 and plan.layers == (8, 9, 10, 11) and plan.pooling == "cls"
    assert [(s.kind, s.biased) for s in ForwardPlan.build((2, 7), "cls", 12).steps] == (
        [("fork_cls", True), ("shared", False)]
        + [("region", False)] * 3
        + [("region", True)]
        + [("region", False)] * 3
        + [("cls", False)]
    )
    assert [s.kind for s in ForwardPlan.build((10,), "cls", 12).steps] == ["fork_cls", "cls"]
    assert _kinds(ForwardPlan.build((11,), "cls", 12)) == [(11, "cls", True)]


def test_other_forms_fork_every_token():
    assert [s.kind for s in ForwardPlan.build((11,), "all", 12).steps] == ["cls"]
    assert [s.kind for s in ForwardPlan.build((9, 11), "diag", 12).steps] == ["fork", "region", "cls"]
    assert [s.kind for s in ForwardPlan.build((8, 9), "all", 12).steps] == ["fork", "region", "region", "cls"]


def test_layers_are_sorted_and_unique():
    assert ForwardPlan.build((11, 9, 9), "cls", 12) == ForwardPlan.build((9, 11), "cls", 12)


def test_attention_pooled_towers():
    probe_only = ForwardPlan.build((), "cls", 4, pooling="map")
    assert probe_only.prefix == 4 and probe_only.steps == ()
    plan = ForwardPlan.build((1, 3), "all", 4, pooling="map")
    assert plan.prefix == 1 and _kinds(plan) == [(1, "fork", True), (2, "region", False), (3, "region", True)]
    assert plan.describe().endswith("pooling probe: per region (biased)\n(blocks numbered from 1)")
    with pytest.raises(falip.FalipError, match="no \\[CLS\\] query row"):
        ForwardPlan.build((1,), "cls", 4, pooling="map")


def test_describe_numbers_blocks_from_one():
    text = ForwardPlan.build((8, 9, 10, 11), "cls", 12).describe()
    assert text.splitlines() == [
        "blocks 1-8: once per image",
        "block 9: patches once per image, [CLS] per region (biased)",
        "block 10: shared patches, [CLS] key folded in per region (biased)",
        "block 11: per region (biased)",
        "block 12: [CLS] output only, per region (biased)",
        "(blocks numbered from 1)",
    ]
    assert ForwardPlan.build((1,), "cls", 3).describe().startswith("block 1: once per image")
    assert ForwardPlan.build((0,), "all", 2).describe().startswith("no shared prefix")


@pytest.mark.parametrize(
    "layers, form, depth, pooling, message",
    [
        ((12,), "cls", 12, "cls", "out of range for a tower of 12 blocks"),
        ((-1,), "cls", 12, "cls", "out of range"),
        ((), "cls", 12, "cls", "at least one block"),
        ((0,), "cls", 0, "cls", "at least one block, got depth 0"),
        ((0,), "cls", 12, "gap", "pooling must be 'cls' or 'map'"),
        ((0,), "rows", 12, "cls", "form"),
    ],
)
def test_bad_schedules(layers, form, depth, pooling, message):
    with pytest.raises(falip.FalipError, match=message):
        ForwardPlan.build(layers, form, depth, pooling)
