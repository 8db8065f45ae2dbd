"""The app makes no request outside the machine (issue 16: the page icon came from an online font
service, 41 failed requests offline), and its tab shows the local icon."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from scripts.browser import CHROMIUM, fresh_context, go_to, open_view, view_url, wait_for_chart
from scripts.browser import PAIR_QUERY as REQUEST

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}")


def test_pages_request_nothing_outside_the_machine(chromium, app_url):
    url = app_url
    with fresh_context(chromium) as context:
        outside: list[str] = []
        context.on("request", lambda r: urlparse(r.url).hostname not in ("localhost", "127.0.0.1", None)
                   and not r.url.startswith(("data:", "blob:")) and outside.append(r.url))
        page = context.new_page()
        open_view(page, view_url(url, "pages/compare.py", REQUEST, default=True), "Compare")
        wait_for_chart(page)
        go_to(page, "Logit lens")
        wait_for_chart(page)
        page.wait_for_timeout(1500)
        icon = page.locator("link[rel*=icon]").first.get_attribute("href") or ""
        page.close()
    assert outside == [], outside[:5]
    assert "fonts.g" not in icon and "twemoji" not in icon and "jsdelivr" not in icon, icon
