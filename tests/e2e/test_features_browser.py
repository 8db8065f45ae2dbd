"""The Features page in a real browser, with the SAEs twinlens ships: both prompts' feature
tables, the two heatmaps and a feature card draw without an exception."""

from __future__ import annotations

import pytest
from test_browser import REQUEST, SHOTS, pytestmark  # noqa: F401  (the same request; skipped without Chromium)

from scripts.browser import chromium, open_view, serve, settle, view_url


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    with serve(log=tmp_path_factory.mktemp("streamlit") / "server.log") as url:
        with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
            tab = context.new_page()
            open_view(tab, view_url(url, "pages/features.py", REQUEST), "Features")
            yield tab


def test_features_page_draws_tables_heatmaps_and_a_card(page):
    page.locator("[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg").first.wait_for(
        timeout=300_000
    )
    settle(page)
    exceptions = page.locator("[data-testid=stException]")
    assert exceptions.count() == 0, exceptions.first.inner_text()
    assert page.locator("[data-testid=stAlert]").filter(has_text="ships no SAE").count() == 0
    assert page.get_by_role("heading", name="Features × positions").count() == 1
    assert page.get_by_role("heading", name="Feature card").count() == 1
    assert page.locator("[data-testid=stVegaLiteChart]").count() >= 3  # two heatmaps and the card
    assert page.get_by_text("held-out FVU on its card", exact=False).count() == 1
    page.screenshot(path=SHOTS / "features.png", full_page=True)
