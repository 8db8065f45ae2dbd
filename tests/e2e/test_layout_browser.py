"""The sidebar at a common laptop size: what a newcomer needs first is on screen without scrolling."""

from __future__ import annotations

from test_browser import pytestmark  # noqa: F401  (skipped without Chromium)

from scripts.browser import PAIR_QUERY, fresh_context, settle, view_url

WIDTH, HEIGHT = 1440, 900
COMPARE = "[data-testid=stSidebar] [data-testid=stFormSubmitButton] button"


def inside_viewport(locator) -> bool:
    box = locator.bounding_box()
    return box is not None and 0 <= box["y"] and box["y"] + box["height"] <= HEIGHT


def test_compare_and_the_first_example_are_on_screen_at_1440x900(chromium, app_url):
    base = app_url
    with fresh_context(chromium, WIDTH, HEIGHT) as context:
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


def test_every_page_is_one_click_away_at_1280_px(chromium, app_url):
    """The navigation shows a link to every page of the registry, grouped by section, inside the
    window at 1280 px: nothing folded into a menu or under "more"; a click opens the page."""
    from lib.app.registry import PAGES, SECTIONS

    with fresh_context(chromium, 1280, 800) as context:
        page = context.new_page()
        page.goto(app_url)
        settle(page)
        nav = page.locator(".st-key-twinlens-nav")
        for row in PAGES:
            link = nav.get_by_role("link", name=row.title, exact=True)
            assert link.count() == 1, row.title
            box = link.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1280, (row.title, box)
        assert [s for s in SECTIONS if nav.get_by_text(s, exact=True).count()] == list(
            dict.fromkeys(row.section for row in PAGES)
        )
        assert page.get_by_text("more", exact=True).count() == 0
        nav.get_by_role("link", name=PAGES[-1].title, exact=True).click()
        settle(page)
        assert page.get_by_role("heading", name=PAGES[-1].title).count() >= 1
