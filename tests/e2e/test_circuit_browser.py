"""The Circuit page in a real browser: the circuit of the France/Italy pair on the embedded model,
drawn as a graph with its faithfulness curve, and a node looked at."""

from __future__ import annotations

import pytest
from test_browser import REQUEST, SHOTS, pytestmark  # noqa: F401  (the same request; skipped without Chromium)

from scripts.browser import assert_no_exception, opened_view, settle


@pytest.fixture(scope="module")
def page(chromium, app_url):
    with opened_view(chromium, app_url, "pages/circuit.py", REQUEST, "Circuit") as tab:
        yield tab



def test_finding_the_circuit_draws_the_graph_and_the_curve(page):
    page.get_by_role("button", name="Find the circuit").click()
    page.get_by_text("when they alone carry A's values", exact=False).wait_for(timeout=300_000)
    settle(page)
    assert_no_exception(page)
    charts = page.locator("[data-testid=stVegaLiteChart]")
    assert charts.count() == 2
    charts.first.locator("canvas, svg").first.wait_for(timeout=60_000)
    assert page.get_by_role("button", name="⬇ graph (SVG)").count() == 1
    page.screenshot(path=SHOTS / "circuit-run.png", full_page=True)
    assert page.get_by_text("Direct effect of embed on the metric", exact=False).count() == 1
