"""The sidebar at a common laptop size: what a newcomer needs first is on screen without scrolling."""

from __future__ import annotations

from pathlib import Path

from test_browser import pytestmark  # noqa: F401  (skipped without Chromium)

from scripts.browser import PAIR_QUERY, chromium, serve, settle, view_url

WIDTH, HEIGHT = 1440, 900
COMPARE = "[data-testid=stSidebar] [data-testid=stFormSubmitButton] button"


def inside_viewport(locator) -> bool:
    box = locator.bounding_box()
    return box is not None and 0 <= box["y"] and box["y"] + box["height"] <= HEIGHT


def test_compare_and_the_first_example_are_on_screen_at_1440x900(tmp_path: Path):
    with serve(log=tmp_path / "server.log") as base, chromium(tmp_path / "profile", WIDTH, HEIGHT) as context:
        page = context.new_page()
        page.goto(base)  # the empty landing page: no comparison yet, the examples open
        settle(page)
        compare = page.locator(COMPARE)
        assert inside_viewport(compare), compare.bounding_box()
        first_example = page.locator("[data-testid=stSidebar] [data-testid=stExpander] button").first
        assert inside_viewport(first_example), first_example.bounding_box()

        page.goto(view_url(base, "pages/compare.py", PAIR_QUERY, default=True))  # a comparison on screen
        settle(page)
        assert inside_viewport(page.locator(COMPARE)), page.locator(COMPARE).bounding_box()
