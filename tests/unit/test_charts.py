"""The shared charts (lib.app.charts): frames built from real results on a tiny model, and the
chart specs the pages draw — every position labelled, A and B told apart, axes that fit the data."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from lib.analyses.common.distances import distance_report
from lib.analyses.common.lens import lens_grid
from lib.analyses.diff import top_token_diff
from lib.analyses.patching import patch_captures
from lib.analyses.watch import watch_tokens
from lib.app import charts
from lib.core.capture import capture

A, B = "You have happy emotion in yourself!", "You have angry emotion in yourself!"


@pytest.fixture(scope="module")
def llama(tiny_models):
    return tiny_models["llama"]


@pytest.fixture(scope="module")
def caps(llama):
    return capture(llama, A), capture(llama, B)


def layers(spec: dict) -> list[dict]:
    return spec.get("layer", [spec])


def x_axis(spec: dict) -> dict:
    return layers(spec)[0]["encoding"]["x"]["axis"]


def test_position_labels_are_unique_and_name_both_tokens_where_they_differ():
    assert charts.position_label(2, "␣happy", "␣angry") == "2 ␣happy/␣angry"
    assert charts.position_label(3, "␣emotion", "␣emotion") == "3 ␣emotion"
    assert charts.position_label(0, "the") != charts.position_label(5, "the")


def test_long_axes_keep_every_nth_label_the_last_and_every_differing_one():
    columns = [f"{i} t" for i in range(100)]
    differs = [i == 37 for i in range(100)]
    shown = charts.labelled_columns(columns, differs, max_labels=20)
    assert "37 t" in shown and "99 t" in shown and "0 t" in shown
    assert len(shown) <= 22
    assert charts.labelled_columns(columns[:20], differs[:20], max_labels=20) == columns[:20]


def test_distance_heatmap_labels_every_position_and_marks_the_differing_one(llama, caps):
    cap_a, cap_b = caps
    report = distance_report(cap_a.residual, cap_b.residual, drop_first=False)
    frame = charts.position_distance_frame(report.positions, cap_a.tokens, cap_b.tokens)
    assert len(frame) == (llama.n_layers + 1) * cap_a.n_tokens
    differing = frame.loc[frame["differs"], "position"].unique().tolist()
    assert differing == [p for p in range(cap_a.n_tokens) if cap_a.tokens[p] != cap_b.tokens[p]] != []
    axis = x_axis(charts.heatmap(frame, "cosine distance", legend="cosine distance", x_title="position")
                  .to_dict())
    assert axis["values"] == list(dict.fromkeys(frame["column"]))  # every position, in order
    assert axis["labelOverlap"] is False  # Vega-Lite may not drop any of them
    for p in differing:
        label = charts.position_label(p, cap_a.tokens[p], cap_b.tokens[p])
        assert label in axis["labelColor"]["condition"]["test"]


def layer_frame(n_layers: int) -> pd.DataFrame:
    return pd.DataFrame({"layer": range(n_layers), "column": ["0 a"] * n_layers, "differs": False,
                         "position": 0, "v": 0.5})


def y_axis(spec: dict) -> dict:
    return layers(spec)[0]["encoding"]["y"]["axis"]


def test_heatmaps_label_every_layer_of_a_30_layer_model():
    axis = y_axis(charts.heatmap(layer_frame(31), "v", legend="v", x_title="p").to_dict())
    assert axis["values"] == list(range(31)) and axis["labelOverlap"] is False  # Vega-Lite drops none


def test_heatmaps_of_deep_models_label_every_nth_layer_and_the_last():
    axis = y_axis(charts.heatmap(layer_frame(81), "v", legend="v", x_title="p").to_dict())
    assert axis["values"][:3] == [0, 2, 4] and axis["values"][-1] == 80 and axis["labelOverlap"] is False


def test_heatmap_colour_domain_fits_the_values_and_diverging_scales_are_centred():
    frame = pd.DataFrame({"layer": [0, 0, 1, 1], "column": ["0 a", "1 b"] * 2, "differs": [False, True] * 2,
                          "position": [0, 1, 0, 1], "v": [0.0, 0.12, 0.01, 0.15]})
    rect = layers(charts.heatmap(frame, "v", legend="v", x_title="p").to_dict())[0]
    low, high = rect["encoding"]["color"]["scale"]["domain"]
    assert low == 0.0 and 0.15 <= high < 0.2  # not 0…1: the colours use the whole scale
    signed = frame.assign(v=[-3.0, 0.5, 1.0, 0.0])
    rect = layers(charts.heatmap(signed, "v", legend="v", x_title="p", diverging=True).to_dict())[0]
    assert rect["encoding"]["color"]["scale"]["domain"] == [-3.0, 3.0]
    assert rect["encoding"]["color"]["scale"]["domainMid"] == 0


def test_lens_frame_holds_each_cell_with_entropy_in_bits(llama, caps):
    cap_a, _ = caps
    grid = lens_grid(llama, cap_a, tuple(range(cap_a.n_tokens)), 3)
    frame = charts.lens_grid_frame("A", grid, [p == 2 for p in grid.positions])
    assert len(frame) == (llama.n_layers + 1) * cap_a.n_tokens
    cell = frame[(frame["layer"] == 1) & (frame["position"] == 2)].iloc[0]
    logp = torch.log_softmax(llama.backend.lens_logits(cap_a.residual[1, 2][None]).float(), -1)[0]
    assert cell["entropy (bits)"] == pytest.approx(float(-(logp.exp() * logp).sum()) / math.log(2), rel=1e-4)
    assert cell["top1"] == grid.cells[1][2].top[0].token and bool(cell["differs"])
    spec = charts.heatmap(frame, "probability", legend="p", x_title="position", domain=[0, 1], text="label",
                          outline="final", clickable=True).to_dict()
    assert x_axis(spec)["values"] == [charts.position_label(p, t) for p, t in zip(grid.positions, grid.tokens,
                                                                                   strict=True)]
    assert [p["name"] for p in spec.get("params", []) + layers(spec)[0].get("params", [])] == ["cell"]


def test_patching_frame_holds_each_effect(llama, caps):
    result = patch_captures(llama, *caps)
    frame = charts.patching_frame(result)
    assert frame["effect"].tolist() == [e for row in result.effect for e in row]
    assert frame.loc[frame["differs"], "position"].unique().tolist() == [
        p for p in result.positions if result.tokens_a[p] != result.tokens_b[p]]


def test_watch_lines_tell_a_from_b_in_the_legend_and_fit_the_axis(llama, caps):
    ids = caps[0].final_logits.topk(2).indices.tolist()
    watch = watch_tokens(llama, *caps, ids)
    frame = charts.watch_frame(watch)
    assert set(frame["prompt"]) == {"A", "B"} and len(frame) == 2 * 2 * (llama.n_layers + 1)
    spec = charts.layer_lines(frame, "probability", y_title="p", colour="token", side="prompt",
                              floor=0.0).to_dict()
    lines = spec
    dash = lines["encoding"]["strokeDash"]
    assert dash["scale"]["domain"] == ["A", "B"] and dash["scale"]["range"][0] != dash["scale"]["range"][1]
    # Which line is A and which is B is written out (a dash legend shows two identical dots or nothing).
    assert spec["title"]["text"] == "A: solid line ━━ · B: dashed line ╍╍"
    low, high = lines["encoding"]["y"]["scale"]["domain"]
    assert low <= frame["probability"].min() and frame["probability"].max() <= high
    assert high - frame["probability"].max() <= 0.06 * (high - low) + 1e-12


def test_divergence_chart_has_fitted_axes_and_no_rotated_labels(llama, caps):
    diff = top_token_diff(llama, *caps, top_k=3)
    frame = charts.divergence_frame(diff)
    assert frame[frame["measure"] == "Jensen–Shannon"]["bits"].tolist() == [l.js_bits for l in diff.layers]
    spec = charts.divergence_chart(frame).to_dict()
    panels = spec["hconcat"]
    assert len(panels) == 2
    for panel, measure in zip(panels, ("KL", "Jensen–Shannon"), strict=True):
        values = frame[frame["measure"] == measure]["bits"]
        low, high = layers(panel)[0]["encoding"]["y"]["scale"]["domain"]
        assert low <= values.min() and values.max() <= high <= values.max() * 1.2 + 1e-9
        texts = [layer for layer in layers(panel) if layer.get("mark", {}).get("type") == "text"]
        assert all(not layer["mark"].get("angle") for layer in texts)
        assert len(texts) <= 1


def test_presentation_size_makes_a_heatmaps_text_and_rows_larger_and_keeps_every_layer():
    frame = layer_frame(31).assign(label="␣Paris")
    plain = charts.heatmap(frame, "v", legend="v", x_title="p", text="label").to_dict()
    big = charts.heatmap(frame, "v", legend="v", x_title="p", text="label",
                         zoom=charts.PRESENTATION_SCALE).to_dict()
    font = [layer["mark"].get("fontSize") for layer in layers(big) if layer["mark"]["type"] == "text"]
    assert font == [9 * charts.PRESENTATION_SCALE]
    assert big["height"] > plain["height"]
    assert x_axis(big)["labelFontSize"] > x_axis(plain)["labelFontSize"]
    assert y_axis(big)["labelFontSize"] > y_axis(plain)["labelFontSize"]
    assert big["config"]["legend"]["labelFontSize"] > 10
    assert y_axis(big)["values"] == list(range(31))  # every layer still labelled


def test_line_chart_legends_wrap_into_rows_that_fit_a_half_width_chart():
    words = ["␣Claire", "␣Mary", "␣the", "␣a bottle of milk", "␣shops", "␣them"]
    frame = pd.DataFrame({"layer": [0, 1] * len(words), "series": [w for w in words for _ in (0, 1)],
                          "value": range(2 * len(words))})
    legend = charts.layer_lines(frame, "value", y_title="v").to_dict()["encoding"]["color"]["legend"]
    assert legend["orient"] == "bottom" and legend["columns"] == charts.LEGEND_COLUMNS
    assert legend["columns"] * (legend["labelLimit"] + 40) <= 470  # label plus symbol and gap, per entry
    one = charts.layer_lines(frame[frame["series"] == "␣the"], "value", y_title="v").to_dict()
    assert one["encoding"]["color"]["legend"]["columns"] == 1
