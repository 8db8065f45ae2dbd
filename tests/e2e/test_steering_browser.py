"""Chat, continuations and steering in a real browser: a shared link with chat on shows the
continuations with an emoji joined from its byte pieces, and a steering sweep runs without exception."""

from __future__ import annotations

import re

from test_browser import SHOTS, pytestmark  # noqa: F401  (skipped without Chromium)

from scripts.browser import assert_no_exception, open_view, settle, view_url

CHAT_LINK = {"model": "default", "a": "Is there a seahorse emoji?", "b": "Is there a dolphin emoji?",
             "k": "5", "chat": "1", "system": "", "prefill": "Yes, here it is:"}
SLOW = 600  # seconds: the model loads, two 24-token continuations run (a busy CI machine is slow)




def test_shared_chat_link_shows_continuations_with_joined_emoji(context):
    url, browser = context
    page = browser.new_page()
    open_view(page, view_url(url, "pages/continuations.py", CHAT_LINK), "Continuations", timeout=SLOW)
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("greedily it completes to", exact=False).first.wait_for(timeout=SLOW * 1000)
    settle(page, SLOW)
    assert_no_exception(page)
    assert page.locator("[data-testid=stSidebar]").get_by_text("chat", exact=True).count() >= 1
    captions = page.get_by_text("greedily it completes to", exact=False)
    assert captions.count() == 2  # both first tokens are the first piece of an emoji
    texts = page.locator("[data-testid=stText]").all_inner_texts()
    assert any(any(ord(c) >= 0x1F000 for c in t) for t in texts), texts  # an emoji, drawn whole
    page.screenshot(path=SHOTS / "continuations-chat.png", full_page=True)
    page.close()


def test_steering_sweep_runs_in_the_browser(context):
    url, browser = context
    page = browser.new_page()
    open_view(page, view_url(url, "pages/steering.py", CHAT_LINK), "Steering", timeout=SLOW)
    page.get_by_role("button", name="Run sweep").click()
    page.locator("[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg").first.wait_for(
        timeout=SLOW * 1000
    )
    settle(page, SLOW)
    assert_no_exception(page)
    best = r"push that moves B to A is at layer \d+|furthest is layer \d+|most at layer \d+"
    assert page.get_by_text(re.compile(best)).count() == 1
    page.screenshot(path=SHOTS / "steering-sweep.png", full_page=True)
    page.close()
