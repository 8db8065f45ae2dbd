"""The Patching page in a real browser: running the grid draws the heatmap, the reading and the lens."""

from __future__ import annotations

import pytest
from test_browser import REQUEST, SHOTS, pytestmark  # noqa: F401  (the same request; skipped without Chromium)

from scripts.browser import opened_view, settle


@pytest.fixture(scope="module")
def page(chromium, app_url):
    with opened_view(chromium, app_url, "pages/patching.py", REQUEST, "Patching") as tab:
        yield tab


def test_running_patching_draws_the_heatmap_reading_and_lens(page):
    page.get_by_role("button", name="Run patching").click()
    page.locator("[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg").first.wait_for(
        timeout=300_000
    )
    settle(page)
    exceptions = page.locator("[data-testid=stException]")
    assert exceptions.count() == 0, exceptions.first.inner_text()
    reading = "At layer 0 the difference sits at position 3 ('␣Italy'"
    assert page.get_by_text(reading, exact=False).count() == 1
    page.screenshot(path=SHOTS / "patching-run.png", full_page=True)
    assert page.get_by_role("heading", name="B's logit lens after one patch").count() == 1
