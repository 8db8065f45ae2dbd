"""The Sets page in a real browser (tiny GPT-2 for speed): two pasted lists are compared without
exception, with the sentence, the charts and the rows; a bad input is one message naming the row,
and the typed lists stay."""

from __future__ import annotations

from test_browser import SHOTS, pytestmark  # noqa: F401  (skipped without Chromium)

from scripts.browser import CHART, assert_no_exception, open_view, settle, view_url

A = "You have happy emotion in yourself!\nThe capital of France is\nthe quick brown fox"
B = "You have angry emotion in yourself!\nThe capital of Italy is\nthe lazy dog"
SLOW = 300




def paste(page, url: str, model: str, a: str, b: str) -> None:
    open_view(page, view_url(url, "pages/sets.py", {"model": model}), "Sets", timeout=SLOW)
    page.get_by_text("paste two lists").click()
    page.get_by_label("Set A, one prompt a line").wait_for(timeout=SLOW * 1000)
    page.get_by_label("Set A, one prompt a line").fill(a)
    page.get_by_label("Set B, one prompt a line").fill(b)
    page.get_by_text("Paired: line i of A goes with line i of B").click()
    page.get_by_role("button", name="Compare sets").click()


def test_pasted_sets_are_compared(context, tiny_folders):
    url, browser = context
    page = browser.new_page()
    paste(page, url, str(tiny_folders["gpt2"]), A, B)
    page.locator(CHART).first.wait_for(timeout=SLOW * 1000)
    settle(page, SLOW)
    assert_no_exception(page)
    assert page.get_by_text("Their states are farthest apart at layer", exact=False).count() == 1
    assert page.locator(CHART).count() == 3
    assert page.get_by_role("button", name="⬇ CAA vector at layer", exact=False).count() == 1
    page.screenshot(path=SHOTS / "sets.png", full_page=True)
    page.close()


def test_bad_input_names_the_row_and_keeps_the_lists(context, tiny_folders):
    url, browser = context
    page = browser.new_page()
    paste(page, url, str(tiny_folders["gpt2"]), "one\n\ntwo", "x\ny")
    page.get_by_text("Set A has empty lines at row 2", exact=False).wait_for(timeout=SLOW * 1000)
    settle(page, SLOW)
    assert_no_exception(page)
    assert page.get_by_label("Set A, one prompt a line").input_value() == "one\n\ntwo"
    page.close()
