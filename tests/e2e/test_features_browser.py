"""The Features page in a real browser, with the SAEs twinlens ships: both prompts' feature
tables, the two heatmaps and a feature card draw without an exception; the SAE rows of the
bad-input table typed into the SAE box get one message each and the page keeps working."""

from __future__ import annotations

import pytest
from bad_input_cases import GOOD, SAE_CASE_NAMES, sae_cases  # noqa: F401  (fixture)
from test_browser import REQUEST, SHOTS, pytestmark  # noqa: F401  (the same request; skipped without Chromium)

from scripts.browser import open_view, settle, view_url


@pytest.fixture(scope="module")
def served_tab(context):
    """(the app's URL, a tab of the module's browser context)."""
    url, browser = context
    return url, browser.new_page()


@pytest.fixture(scope="module")
def page(served_tab):
    url, tab = served_tab
    open_view(tab, view_url(url, "pages/features.py", REQUEST), "Features")
    return tab


def test_features_page_draws_tables_heatmaps_and_a_card(page):
    page.locator("[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg").first.wait_for(
        timeout=300_000
    )
    settle(page)
    exceptions = page.locator("[data-testid=stException]")
    assert exceptions.count() == 0, exceptions.first.inner_text()
    assert page.locator("[data-testid=stAlert]").filter(has_text="ships no SAE").count() == 0
    assert page.get_by_role("heading", name="Features × positions").count() == 1
    assert page.get_by_role("heading", name="Feature card").count() == 1
    assert page.locator("[data-testid=stVegaLiteChart]").count() >= 3  # two heatmaps and the card
    assert page.get_by_text("held-out FVU on its card", exact=False).count() == 1
    page.screenshot(path=SHOTS / "features.png", full_page=True)


def test_bad_saes_get_one_message_each_and_the_page_keeps_working(served_tab, tiny_folders, tiny_models,
                                                                   sae_cases, tmp_path):  # noqa: F811
    """The layer row is left out: with a folder the page reads the SAE's own residual (the AppTest
    checks that it says which)."""
    import torch

    from lib.analyses.common.sae import save_saelens

    url, tab = served_tab
    query = {"model": str(tiny_folders["llama"]), "a": GOOD, "b": "The capital of Italy is"}
    open_view(tab, view_url(url, "pages/features.py", query), "Features")
    box = tab.get_by_label("SAE folder")
    errors = tab.locator("[data-testid=stMain] [data-testid=stAlertContentError]")
    exceptions = tab.locator("[data-testid=stException]")

    def use(path: str) -> None:
        if not box.is_visible():  # the expander closes when the page redraws around it
            tab.get_by_text("Use another SAE").click()
        box.fill(path)
        box.press("Enter")
        tab.wait_for_timeout(500)
        settle(tab)

    for name in SAE_CASE_NAMES:
        case = sae_cases[name]
        if case.layer is not None:
            continue
        use(case.path)
        assert exceptions.count() == 0, (name, exceptions.first.inner_text())
        assert errors.count() == 1, (name, errors.all_inner_texts())
        assert case.refused in errors.first.inner_text().replace("\\", ""), name
    d = tiny_models["llama"].d_model
    g = torch.Generator().manual_seed(0)
    good = save_saelens(tmp_path / "good", W_enc=torch.randn(d, 16, generator=g), b_enc=torch.zeros(16),
                        W_dec=torch.randn(16, d, generator=g), b_dec=torch.zeros(d), architecture="standard",
                        hook_name="blocks.0.hook_resid_post", model_name=tiny_models["llama"].name)
    use(str(good))
    assert errors.count() == 0 and exceptions.count() == 0
    assert tab.get_by_role("heading", name="Features × positions").count() == 1
