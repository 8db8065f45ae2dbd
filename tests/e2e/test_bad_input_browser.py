"""Prompts and model names holding HTML, Markdown and LaTeX, in a real browser: no script runs (no
dialog opens, no <img src=x> exists), nothing is rendered as Markdown or math, the text shows
literally; such a comparison saves and exports from the History page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bad_input_cases import HTML
from test_browser import pytestmark  # noqa: F401  (skipped without Chromium)

from scripts.browser import settle, view_url

MARKDOWN = "**bold** [link](https://example.com) $x^2$"


@pytest.fixture(scope="module")
def browser_page(context):
    url, browser = context
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    return url, page, dialogs


def assert_nothing_rendered(page, dialogs: list[str]) -> None:
    assert dialogs == []
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("[data-testid=stMain] .katex").count() == 0
    assert page.locator("[data-testid=stMain] a[href='https://example.com']").count() == 0
    assert page.locator("[data-testid=stMain] strong", has_text="bold").count() == 0
    assert page.locator("[data-testid=stException]").count() == 0


def test_html_and_markdown_prompts_show_as_text(browser_page, tiny_folders):
    url, page, dialogs = browser_page
    query = {"model": str(tiny_folders["gpt2"]), "a": HTML, "b": MARKDOWN, "k": "3"}
    page.goto(view_url(url, "pages/compare.py", query, default=True))
    page.locator("[data-testid=stMain] [data-testid=stText]").first.wait_for(timeout=180_000)
    settle(page)
    texts = page.locator("[data-testid=stMain] [data-testid=stText]").all_inner_texts()
    assert [t.strip() for t in texts[:2]] == [HTML, MARKDOWN]
    assert_nothing_rendered(page, dialogs)


def test_html_model_name_shows_as_text_in_the_error(browser_page):
    url, page, dialogs = browser_page
    page.goto(view_url(url, "pages/compare.py", {"model": HTML, "a": "x", "b": "y"}, default=True))
    error = page.locator("[data-testid=stMain] [data-testid=stAlertContentError]").first
    error.wait_for(timeout=180_000)
    settle(page)
    assert HTML in error.inner_text()
    assert_nothing_rendered(page, dialogs)


def test_saved_comparison_exports_from_the_history_page(browser_page, tiny_folders, tmp_path):
    """Save on the Compare page, then both export buttons on the History page download its JSON."""
    url, page, dialogs = browser_page
    query = {"model": str(tiny_folders["gpt2"]), "a": HTML, "b": MARKDOWN, "k": "3"}
    page.goto(view_url(url, "pages/compare.py", query, default=True))
    name = page.get_by_label("Name")
    name.wait_for(timeout=180_000)
    settle(page)
    name.fill("exported from the browser")
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Saved as #").wait_for(timeout=60_000)
    page.goto(view_url(url, "pages/history.py", query))
    for label in ("Export this (JSON)", "Export all (JSON)"):
        button = page.get_by_role("button", name=label)
        button.wait_for(timeout=180_000)
        with page.expect_download() as download:
            button.click()
        saved = json.loads(Path(download.value.path()).read_text())["comparisons"]
        mine = [c for c in saved if c["name"] == "exported from the browser"]
        assert [(c["prompt_a"], c["prompt_b"]) for c in mine] == [(HTML, MARKDOWN)]
    assert_nothing_rendered(page, dialogs)
