"""Every result serializes from its dataclass fields and reads back equal, through strict JSON."""

from __future__ import annotations

import json
import math

import pytest

from lib.analyses import bos, compare, diff, patching, watch
from lib.analyses.common import distances, lens
from lib.app.export import to_json
from lib.core.capture import capture
from lib.core.records import Record, decode, encode

A, B = "The capital of France is", "The capital of Italy is"


def results(model) -> list:
    cap_a, cap_b = capture(model, A), capture(model, B)
    moved = cap_a.final_logits - cap_b.final_logits
    return [
        compare.compare_captures(model, cap_a, cap_b, top_k=3),
        diff.top_token_diff(model, cap_a, cap_b, top_k=3),
        watch.watch_tokens(model, cap_a, cap_b, (5, 6)),
        bos.bos_effect(model, capture(model, A, "on"), capture(model, A, "off"), top_k=3),
        lens.lens_grid(model, cap_a, (0, 1), 3),
        lens.cell_detail(model, cap_a, 1, 1, 3),
        distances.capture_distances(model, cap_a, cap_b),
        patching.patch_captures(model, cap_a, cap_b, answer=int(moved.argmax()), wrong=int(moved.argmin())),
        patching.patched_lens_captures(model, cap_a, cap_b, 1, 1, top_k=3),
    ]


def test_every_result_reads_back_equal_through_strict_json(family_model):
    for result in results(family_model):
        text = to_json(encode(result))
        assert "Infinity" not in text and "NaN" not in text
        assert decode(type(result), json.loads(text)) == result, type(result).__name__


def test_records_write_their_fields_by_name(family_model):
    comparison = results(family_model)[0]
    assert isinstance(comparison, Record)
    assert set(comparison.to_dict()) == {"model", "settings", "a", "b", "distance", "mode", "model2", "note"}
    assert compare.Comparison.from_dict(json.loads(to_json(comparison.to_dict()))) == comparison


def test_infinite_floats_come_back_as_floats():
    assert math.isinf(decode(float, "inf")) and decode(float, "-inf") < 0
    assert decode(tuple[float, ...], [1, "inf"]) == (1.0, math.inf)


@pytest.mark.parametrize(
    "kind, data",
    [(int, "3"), (str, 3), (tuple[int, ...], 3), (lens.TokenProb, [1]), (float, None), (int, True)],
)
def test_data_of_the_wrong_shape_is_refused(kind, data):
    with pytest.raises((TypeError, ValueError)):
        decode(kind, data)
