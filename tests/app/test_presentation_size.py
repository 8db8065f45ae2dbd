"""A larger "presentation" size for the lens heatmaps (issue 24): the Logit lens page's switch draws
both heatmaps with larger text and rows, and stays on after a visit to another page."""

from __future__ import annotations

import json

from app_helpers import open_page

from lib.app import charts


def text_sizes(app) -> list[float]:
    sizes = []
    for chart in app.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        sizes += [layer["mark"]["fontSize"] for layer in spec.get("layer", [])
                  if isinstance(layer.get("mark"), dict) and layer["mark"].get("type") == "text"]
    return sizes


def test_presentation_size_enlarges_both_lens_heatmaps_and_is_kept(app, tiny_folders):
    open_page(app, "pages/logit_lens.py", model=str(tiny_folders["llama"]),
              a="The capital of France is", b="The capital of Italy is")
    assert text_sizes(app) == [9, 9]
    app.toggle(key="lens_present").set_value(True).run()
    assert not app.exception, app.exception
    assert text_sizes(app) == [9 * charts.PRESENTATION_SCALE] * 2
    app.switch_page("pages/compare.py").run()
    app.switch_page("pages/logit_lens.py").run()
    assert app.toggle(key="lens_present").value is True
    assert text_sizes(app) == [9 * charts.PRESENTATION_SCALE] * 2
