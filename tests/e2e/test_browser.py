"""The app in a real browser: every page opened from a shareable URL draws without an exception.

The test process's Streamlit server (tests/e2e/conftest.py) runs `dashboard.py`; Debian's Chromium
(headless, a fresh context) opens each page as a new browser session would. The first test starts
a server of its own: what a fresh server does with its first request is what it checks.
Screenshots land in tests/e2e/screenshots/ (not committed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.browser import (
    CHROMIUM,
    assert_no_exception,
    go_to,
    open_view,
    serve,
    settle,
    view_url,
    wait_for_chart,
)
from scripts.browser import PAIR_QUERY as REQUEST

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: install Debian's chromium (.ci/run does it)"
)

# Pages that draw a chart as soon as a comparison exists.
CHARTED = {"pages/compare.py", "pages/logit_lens.py", "pages/distances.py", "pages/diff.py"}
SHOTS = Path(__file__).parent / "screenshots"


def dashboard_pages() -> list[tuple[str, str]]:
    """(file, title) of every page the registry lists (the navigation reads the same table)."""
    from lib.app.registry import PAGES as ROWS

    return [(row.page, row.title) for row in ROWS]


PAGES = dashboard_pages()
DEFAULT = "pages/compare.py"  # dashboard.DEFAULT_PAGE: where a session starts (Findings is first in the bar)


@pytest.fixture(scope="module", autouse=True)
def shots():
    SHOTS.mkdir(exist_ok=True)


def test_shareable_url_opens_its_page_first_thing_on_a_fresh_server(browser, tmp_path):
    # The first request a server gets for /logit_lens runs that file alone (Streamlit's pages/
    # mode); views.page() reruns it through the entrypoint, which reads the URL and compares.
    with serve(log=tmp_path / "server.log") as fresh:
        page = browser.new_page()
        open_view(page, view_url(fresh, "pages/logit_lens.py", REQUEST), "Logit lens")
        assert_no_exception(page)
        assert page.locator("[data-testid=stSidebar] textarea").first.input_value() == REQUEST["a"]
        assert page.locator("[data-testid=stVegaLiteChart]").count() == 2
        page.close()


@pytest.mark.parametrize(("page_file", "title"), PAGES, ids=[Path(f).stem for f, _ in PAGES])
def test_every_page_draws_from_a_shareable_url(app_url, browser, page_file, title):
    page = browser.new_page()
    open_view(page, view_url(app_url, page_file, REQUEST, default=page_file == DEFAULT), title)
    assert_no_exception(page)
    if page_file in CHARTED:
        wait_for_chart(page)
    page.screenshot(path=SHOTS / f"{Path(page_file).stem}.png", full_page=True)
    page.close()


def test_switching_pages_keeps_the_url_shareable(app_url, browser):
    page = browser.new_page()
    open_view(page, view_url(app_url, DEFAULT, REQUEST, default=True), dict(PAGES)[DEFAULT])
    go_to(page, "Residual distances")
    page.wait_for_url("**/distances?**a=The+capital+of+France+is**", timeout=30_000)
    assert_no_exception(page)
    page.close()


def test_clicking_a_lens_cell_shows_that_cell_for_both_prompts(app_url, browser):
    page = browser.new_page()
    open_view(page, view_url(app_url, "pages/logit_lens.py", REQUEST), "Logit lens")
    wait_for_chart(page)

    def picked_cells() -> list[str]:  # "layer ℓ, position p" under A and under B
        lines = page.locator("[data-testid=stText]").all_inner_texts()
        return [line[3:].split(" (")[0] for line in lines if line[:2] in ("A:", "B:")]

    before = picked_cells()
    box = page.locator("[data-testid=stVegaLiteChart]").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.15)  # an upper, early cell
    for _ in range(120):
        page.wait_for_timeout(500)
        if picked_cells() != before:
            break
    settle(page)
    after = picked_cells()
    assert after != before, f"the click left the picked cell at {before}"
    assert after[0] == after[1]  # the same cell for both prompts
    assert_no_exception(page)
    page.close()
