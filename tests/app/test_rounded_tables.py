"""Tables show numbers a reader can use (issue 24): on Watch, whose probabilities at early layers are
as small as 1e-12, every float column is shown with a format (4 decimals, or the page's own), so
0.000000000008 reads 0.0000 — while the table itself, and so its export, keeps every digit."""

from __future__ import annotations

import json

import pytest
from app_helpers import open_page

from lib.app.readable import READING_FORMAT


def formats(frame) -> dict[str, str]:
    config = json.loads(frame.proto.columns or "{}")
    return {name: c.get("type_config", {}).get("format") for name, c in config.items()}


@pytest.mark.slow
def test_every_float_column_on_watch_has_a_reading_format_and_keeps_its_digits(app, real_model):
    open_page(app, "pages/watch.py", a="The capital of France is", b="The capital of Italy is")
    tiny_seen = False
    for frame in app.dataframe:
        table, shown = frame.value, formats(frame)
        for column in table.columns:
            if table[column].dtype.kind != "f":
                continue
            assert shown.get(column), (column, shown)
            tiny_seen |= bool(((table[column].abs() > 0) & (table[column].abs() < 1e-6)).any())
    assert tiny_seen  # the values themselves are whole: a reading format is what rounds them
    words = next(f for f in app.dataframe if "log-probability" in f.value.columns)
    assert formats(words)["log-probability"] == READING_FORMAT
