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
