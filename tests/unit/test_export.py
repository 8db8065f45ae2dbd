"""Exported files are strict JSON and plain CSV."""

from __future__ import annotations

import json
import math

import pandas as pd

from lib.app.export import export_files, json_safe, to_json


def test_non_finite_floats_become_strings_in_strict_json():
    text = to_json({"kl_bits": [0.5, math.inf, -math.inf, math.nan], "nested": {"x": (1.0, math.inf)}})
    data = json.loads(text, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    assert data == {"kl_bits": [0.5, "inf", "-inf", "nan"], "nested": {"x": [1.0, "inf"]}}


def test_json_safe_keeps_finite_values_and_text():
    assert json_safe({"a": 1, "b": "␣Paris", "c": [0.25]}) == {"a": 1, "b": "␣Paris", "c": [0.25]}


def test_export_files_write_json_then_one_csv_per_table():
    table = pd.DataFrame({"layer": [0, 1], "kl": [0.0, math.inf]})
    files = export_files("diff", {"a": "x"}, {"value": math.inf}, {"per_layer": table})
    assert [f.file_name for f in files] == ["diff.json", "diff-per_layer.csv"]
    assert json.loads(files[0].content) == {"request": {"a": "x"}, "value": "inf"}
    assert files[1].content.splitlines()[0] == "layer,kl"


def test_export_file_names_carry_a_slug_of_the_prompts_and_do_not_collide():
    from lib.app.export import file_stem

    a = "You have happy emotion in yourself!"
    happy = file_stem("distances", [a, "You have angry emotion in yourself!"])
    angry = file_stem("distances", [a, "You have sad emotion in yourself!"])
    assert happy.startswith("distances-you-have-happy-emotion-") and len(happy) < 50
    assert happy != angry
    assert file_stem("lens", ["Ça coûte 5 € — naïve café?"]).startswith("lens-ca-coute-5-naive-")


def test_lens_exports_are_long_tables_with_the_layer_kept(tiny_models):
    from lib.analyses.common.lens import lens_grid
    from lib.analyses.compare import compare_prompts
    from lib.app.compare_frames import comparison_tables, lens_grid_long_frame
    from lib.core.capture import capture

    model = tiny_models["gpt2"]
    comparison = compare_prompts(model, "The capital of France is", "The capital of Italy is", top_k=3)
    lens = comparison_tables(comparison)["lens_A"]
    assert list(lens.columns) == ["source", "layer", "rank", "token", "token_id", "prob", "lens"]
    assert set(lens["lens"]) == {"logit lens"}  # which lens read it, in the CSV too
    assert len(lens) == 3 * (model.n_layers + 2)  # layers 0…L and the model's own top-3
    row = lens[(lens["source"] == "lens") & (lens["layer"] == 1) & (lens["rank"] == 2)].iloc[0]
    assert (row["token_id"], row["prob"]) == (comparison.a.lens[1][1].id, comparison.a.lens[1][1].prob)
    cap = capture(model, "The capital of France is")
    grid = lens_grid(model, cap, (3, 4), 2)
    long = lens_grid_long_frame("A", grid)
    assert len(long) == (model.n_layers + 1) * 2 * 2
    assert not any(" · " in str(v) for v in long["token"])  # nothing packed into one string
    first = long.iloc[0][["layer", "position", "rank", "token_id"]].tolist()
    assert first == [0, 3, 1, grid.cells[0][0].top[0].id]
