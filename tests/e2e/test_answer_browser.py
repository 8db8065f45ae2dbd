"""Compare shows each prompt's answer where the eye lands (issue 24): the seahorse pair, asked as a
chat with the answer start "Yes, here it is:", shows both answers on screen at 1440×900, and the
typed start is drawn highlighted as part of each — not hidden in a collapsed sidebar box. Its lens
tables fit their columns: every rank, #1 to #10, without scrolling sideways."""

from __future__ import annotations

from test_browser import pytestmark  # noqa: F401  (skipped without Chromium)

from lib.app.examples import EXAMPLES
from lib.app.request import Request
from scripts.browser import fresh_context, settle, view_url

WIDTH, HEIGHT = 1440, 900


def test_compare_at_1440_shows_both_answers_with_the_typed_start_and_lens_tables_that_fit(chromium, app_url):
    seahorse = next(e for e in EXAMPLES if e.prefill)
    query = Request(a=seahorse.a, b=seahorse.b, chat=True, prefill=seahorse.prefill).to_query()
    with fresh_context(chromium, WIDTH, HEIGHT) as context:
        page = context.new_page()
        page.goto(view_url(app_url, "pages/compare.py", query, default=True))
        settle(page)
        assert page.get_by_role("button", name="Cancel").count() == 0  # the progress left with its button
        answers = page.locator("[data-testid=stMarkdownContainer]", has_text="Answer (")
        assert answers.count() == 2, page.content()[:2000]
        for i in range(2):
            answer = answers.nth(i)
            box = answer.bounding_box()
            assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= HEIGHT, box
            start = answer.get_by_text(seahorse.prefill, exact=True)
            assert start.is_visible()
            colour = start.evaluate("e => getComputedStyle(e).backgroundColor")
            assert colour not in ("rgba(0, 0, 0, 0)", "transparent"), colour  # highlighted
            assert len(answer.inner_text().split(seahorse.prefill, 1)[1].strip()) > 0  # the model's words
        tables = page.locator(".twinlens-lens-table")
        assert tables.count() == 2
        for i in range(2):
            box = tables.nth(i)
            sideways = box.evaluate("e => e.querySelector('table').scrollWidth - e.clientWidth")
            assert sideways <= 1, sideways  # nothing hidden to the right
            last = box.locator("th", has_text="#10")
            inner, outer = last.bounding_box(), box.bounding_box()
            assert inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 1, (inner, outer)
