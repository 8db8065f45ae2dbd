"""Fixtures the browser tests share: one Chromium and one Streamlit server per test process.

Starting a server, loading the embedded model in it and starting Chromium took 13–17 s for each
of the 13 browser modules. Now each test process starts one of each, when its first browser test
needs it; every module (or test) still gets a fresh browser context — a new visitor's profile, no
cookies, no storage — and a new Streamlit session. What the shared server keeps between modules
is its results cache, which makes a later module faster, never different. A test about a fresh
server (`test_browser`), or one that needs a server started another way (`test_sharing_browser`),
starts its own.
"""

from __future__ import annotations

import pytest

from scripts.browser import chromium_browser, fresh_context, serve


@pytest.fixture(scope="session")
def chromium():
    """Playwright's Browser: one headless Chromium for this test process."""
    with chromium_browser() as browser:
        yield browser


@pytest.fixture(scope="session")
def app_url(tmp_path_factory):
    """The base URL of this test process's Streamlit server (`streamlit run dashboard.py`)."""
    with serve(log=tmp_path_factory.mktemp("streamlit") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser(chromium):
    """A fresh browser context for the module (pages share its cookies, as tabs of one profile do)."""
    with fresh_context(chromium) as context:
        yield context


@pytest.fixture(scope="module")
def context(app_url, browser):
    """(url, browser context): the shared server and the module's fresh context."""
    return app_url, browser
