"""The Components page in a real browser: DLA charts and reading at once, head patching on demand."""

from __future__ import annotations

import pytest
from test_browser import REQUEST, SHOTS, pytestmark  # noqa: F401  (the same request; skipped without Chromium)

from scripts.browser import assert_no_exception, opened_view, settle


@pytest.fixture(scope="module")
def page(chromium, app_url):
    with opened_view(chromium, app_url, "pages/components.py", REQUEST, "Components") as tab:
        yield tab



def test_dla_draws_charts_and_names_the_top_components(page):
    page.get_by_role("button", name="Run components").click()
    page.locator("[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg").first.wait_for(
        timeout=300_000
    )
    settle(page)
    assert_no_exception(page)
    assert page.get_by_text("the largest direct contributions to that", exact=False).count() == 1
    assert page.locator("[data-testid=stVegaLiteChart]").count() >= 8


def test_running_head_patching_shows_exact_and_attribution_side_by_side(page):
    page.get_by_role("button", name="Run head patching").click()
    page.get_by_text("Agreement of attribution patching with exact head patching", exact=False).wait_for(
        timeout=300_000
    )
    settle(page)
    assert_no_exception(page)
    page.screenshot(path=SHOTS / "components-run.png", full_page=True)
    page.get_by_text("Direct logit attribution", exact=True).first.scroll_into_view_if_needed()
    page.screenshot(path=SHOTS / "components-dla.png")
    assert page.locator("[data-testid=stVegaLiteChart]").count() >= 12
