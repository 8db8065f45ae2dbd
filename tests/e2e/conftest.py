"""Fixtures the browser tests share."""

from __future__ import annotations

import pytest

from scripts.browser import chromium, serve


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    """(url, browser context): a fresh server and one Chromium for the module (one Playwright at a
    time: each module closes its own)."""
    with serve(log=tmp_path_factory.mktemp("streamlit") / "server.log") as url:
        with chromium(tmp_path_factory.mktemp("chromium-profile")) as browser:
            yield url, browser
