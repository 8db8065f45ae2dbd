"""Tables show numbers a reader can use (issue 24): on Watch, whose whole-word probabilities at early
layers are as small as 1e-12, every float shown is already rounded (`readable.reading_number`),
while the analysis (and so the export) keeps every digit."""

from __future__ import annotations

import math

from app_helpers import open_page

from lib.app.readable import reading_number


def floats_shown(app) -> list[float]:
    values = []
    for frame in app.dataframe:
        table = frame.value
        for column in table.columns:
            if table[column].dtype.kind == "f":
                values += [float(v) for v in table[column] if math.isfinite(v)]
    return values


def test_watch_tables_show_rounded_numbers(app):
    open_page(app, "pages/watch.py", a="The capital of France is", b="The capital of Italy is")
    shown = floats_shown(app)
    assert shown
    assert all(v == reading_number(v) for v in shown)
    assert not [v for v in shown if 0 < abs(v) < 1e-6]
