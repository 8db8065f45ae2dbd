"""AppTest helpers: the app driven without a browser."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test as app_test_module

from lib.app import ui

ROOT = Path(__file__).resolve().parents[2]


class _NavigationPagesManager(PagesManager):
    """AppTest re-detects the `pages/` folder before every run and then runs the requested page
    file alone (Streamlit's multipage v1 mode), skipping the entrypoint and its sidebar. A real
    server decides this once, and `st.navigation` turns it off; this does the same for AppTest."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        PagesManager.uses_pages_directory = False


@pytest.fixture
def app(monkeypatch):
    """A fresh AppTest of dashboard.py (not yet run), with no results cached by earlier tests
    (the loaded models stay: loading is not what page tests are about)."""
    monkeypatch.setattr(app_test_module, "PagesManager", _NavigationPagesManager)
    ui.clear_results()
    return AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=180)


def submit(at: AppTest, *, a: str | None = None, b: str | None = None, model: str | None = None,
           bos: str | None = None, k: int | None = None) -> AppTest:
    """Fill the sidebar form and press Compare."""
    if not at._tree:
        at.run()
    if model is not None:
        at.sidebar.text_input(key="model").input(model)
    if a is not None:
        at.sidebar.text_area(key="prompt_a").input(a)
    if b is not None:
        at.sidebar.text_area(key="prompt_b").input(b)
    if bos is not None:
        at.sidebar.selectbox(key="bos").set_value(bos)
    if k is not None:
        at.sidebar.number_input(key="top_k").set_value(k)
    at.sidebar.button[0].click()
    return at.run()


def compare_two(at: AppTest, model1: Path, model2: Path, prompt: str = "The capital of France is",
                k: int = 4) -> AppTest:
    """Switch the sidebar to two models, fill it in and press Compare."""
    at.run()
    at.sidebar.radio(key="mode").set_value("models").run()
    at.sidebar.text_input(key="model").input(str(model1))
    at.sidebar.text_input(key="model2").input(str(model2))
    at.sidebar.text_area(key="prompt_a").input(prompt)
    at.sidebar.number_input(key="top_k").set_value(k)
    next(b for b in at.sidebar.button if b.label == "Compare").click()
    return at.run()


def open_page(at: AppTest, page: str, **request) -> AppTest:
    """Open `page` by its shareable link for `request` (model, a, b, bos, k: see `submit`; the others
    take the sidebar's defaults), as a colleague's link opens it: the page computes what it shows and
    nothing of the Compare page (its two answers are about 3 s of the embedded model). The page must
    run without exception. Tests of the sidebar's Compare button call `submit`."""
    at.query_params.update({name: str(value) for name, value in request.items() if value is not None})
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def table_with(at: AppTest, column: str):
    """The first dataframe on the page that has `column`."""
    return next(df.value for df in at.dataframe if column in df.value.columns)


def next_tokens(at: AppTest) -> list[tuple[str, str]]:
    """(side, token) of each 'Next token (side): `token` — in words' line the Compare page shows."""
    import re

    lines = (m.value for m in at.markdown if m.value.startswith("**Next token ("))
    return [re.match(r"\*\*Next token \((.*?)\)\*\*: `(.*?)`", line).groups() for line in lines]


def lens_tables(at: AppTest) -> list:
    """Compare's lens tables (HTML that fits the width) read back as DataFrames: index 'model',
    'layer L'…'layer 0', columns '#1'…'#k', cells 'token  p' (from each cell's data-value)."""
    import html
    import re

    import pandas as pd

    tables = []
    for element in at.get("html"):
        body = element.proto.body
        if "twinlens-lens-table" not in body:
            continue
        columns = [html.unescape(c) for c in re.findall(r"<th[^>]*>(#\d+)</th>", body)]
        rows = re.findall(r'<tr data-row="([^"]*)">(.*?)</tr>', body)
        tables.append(pd.DataFrame(
            [[html.unescape(v) for v in re.findall(r'data-value="([^"]*)"', cells)] for _, cells in rows],
            index=[html.unescape(name) for name, _ in rows], columns=columns,
        ))
    return tables
