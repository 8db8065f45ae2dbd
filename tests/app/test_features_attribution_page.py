"""The Features page's ranking by attribution (issue 24 item 2): the default layer is the shipped
SAE layer nearest to where the difference reaches the last position, the first table is the
library's ranking with the SAE's error row, every heatmap position is labelled, full labels on hover."""

from __future__ import annotations

import json

import pytest
from app_helpers import app, open_page  # noqa: F401  (fixture)

from lib.analyses.features import attribution_of_captures
from lib.core.capture import capture

A, B = "The capital of France is", "The capital of Italy is"


def test_features_default_to_the_arrival_layer_ranked_by_attribution(app, real_model):  # noqa: F811
    open_page(app, "pages/features.py", a=A, b=B)
    assert app.selectbox(key="features-layer").value == 24  # patching: arrives at the last token at 24
    assert app.query_params["features_layer"] == "24"
    expected = attribution_of_captures(real_model, capture(real_model, A), capture(real_model, B), layer=24,
                                       top=10)
    [table] = [df.value for df in app.dataframe if "attribution" in df.value.columns]
    assert table["feature"].tolist() == [str(f.feature) for f in expected.features] + ["SAE error"]
    scores = [f.score for f in expected.features] + [expected.error]
    assert table["attribution"].tolist() == pytest.approx(scores)
    assert any(f"{expected.total:+.2f}" in m.value for m in app.markdown)
    assert all("fires on" in label for label in table["fires on (label)"][:-1])
    heatmaps = [json.loads(c.proto.spec) for c in app.get("vega_lite_chart")]
    heatmaps = [h for h in heatmaps if h.get("mark", {}).get("type") == "rect"]
    assert len(heatmaps) == 2
    for spec in heatmaps:
        axis = spec["encoding"]["x"]["axis"]
        # every position 0…4 labelled, 3 (France/Italy) among them
        assert axis["labelOverlap"] is False and len(axis["values"]) == 5
        assert "label" in [t["field"] for t in spec["encoding"]["tooltip"]]


@pytest.mark.slow
def test_a_link_opens_the_features_page_at_its_layer(app, real_model):  # noqa: F811
    open_page(app, "pages/features.py", a=A, b=B, features_layer=15)
    assert app.selectbox(key="features-layer").value == 15
